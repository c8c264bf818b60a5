package console_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit/journey"
)

// stack is the product as `launchready dev` runs it, in this process: the
// three consumers and the console on one database and one NATS server,
// each service as its own NATS user.
type stack struct {
	*running
	publish func(evs ...*billingv1.BillingEvent)
}

const stackToken = "console-browser-test-token-0123456789abcdef"

// runService starts one service's Run until the test ends and returns the
// addresses it reported ready with.
func runService(t *testing.T, name string, run func(ctx context.Context, ready func(map[string]string)) error) map[string]string {
	t.Helper()
	ready := make(chan map[string]string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(a map[string]string) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s stopped with %v", name, err)
		}
	})
	select {
	case a := <-ready:
		return a
	case err := <-done:
		t.Fatalf("%s did not start: %v", name, err)
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not start within 90s", name)
	}
	return nil
}

func startStack(t *testing.T) *stack {
	t.Helper()
	db := pgtest.NewDatabase(t)
	ns := natstest.Start(t)
	envOf := func(user string, own map[string]string) config.Getenv {
		env := ns.Env(user)
		maps.Copy(env, map[string]string{"DATABASE_URL": db, "HTTP_ADDR": "127.0.0.1:0"})
		maps.Copy(env, own)
		return config.Map(env)
	}
	billing := runService(t, "billing-state", func(ctx context.Context, ready func(map[string]string)) error {
		cfg, err := billingstate.ConfigFromEnv(envOf(natsauth.BillingState, map[string]string{
			"GRPC_ADDR": "127.0.0.1:0", "STATUS_API_TOKENS": "console=" + stackToken + ":read+admin"}))
		if err != nil {
			return err
		}
		cfg.Logger, cfg.Ready = logging.Discard(), ready
		return billingstate.Run(ctx, cfg)
	})
	crm := runService(t, "crm-sync", func(ctx context.Context, ready func(map[string]string)) error {
		cfg, err := crmsync.ConfigFromEnv(envOf(natsauth.CRMSync, nil))
		if err != nil {
			return err
		}
		cfg.Logger, cfg.Ready = logging.Discard(), ready
		return crmsync.Run(ctx, cfg)
	})
	support := runService(t, "support-notify", func(ctx context.Context, ready func(map[string]string)) error {
		cfg, err := supportnotify.ConfigFromEnv(envOf(natsauth.SupportNotify, nil))
		if err != nil {
			return err
		}
		cfg.Logger, cfg.Ready = logging.Discard(), ready
		return supportnotify.Run(ctx, cfg)
	})
	c := startConsoleOn(t, db, ns, map[string]string{"CONSOLE_BILLING_GRPC_ADDR": billing["grpc"], "CONSOLE_BILLING_GRPC_TOKEN": stackToken,
		"CONSOLE_OPS_TARGETS": billing["http"] + "," + crm["http"] + "," + support["http"]})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js, err := bus.Connect(ctx, ns.Conn(natsauth.Ingress), "ingress-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub := bus.NewPublisher(js, nil)
	return &stack{running: c, publish: func(evs ...*billingv1.BillingEvent) {
		t.Helper()
		for _, ev := range evs {
			if _, err := pub.PublishEvent(t.Context(), ev); err != nil {
				t.Fatalf("publish %s: %v", ev.GetEventId(), err)
			}
		}
	}}
}

// publishJourney publishes every step of a fixture journey for a new
// customer, as ingress does, and returns the customer id and its events.
func (s *stack) publishJourney(t *testing.T, name string) (string, []*billingv1.BillingEvent) {
	t.Helper()
	cus := journey.ID("cus")
	var evs []*billingv1.BillingEvent
	for _, step := range journey.Journeys[name](journey.New(t, cus, time.Now().Add(-90*24*time.Hour).Truncate(time.Second))) {
		evs = append(evs, step.Events...)
	}
	s.publish(evs...)
	return cus, evs
}
