package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
)

func TestConsumerConfigFromEnv(t *testing.T) {
	e := config.New(config.Map(nil))
	c := bus.ConsumerConfigFromEnv(e, "billing-state")
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	want := bus.ConsumerConfig{Stream: bus.StreamEvents, Durable: "billing-state", Concurrency: 8, MaxDeliver: 10,
		AckWait: 30 * time.Second, BackoffBase: 500 * time.Millisecond, BackoffMax: 5 * time.Minute}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("defaults = %+v, want %+v", c, want)
	}
	e = config.New(config.Map(map[string]string{"CONSUMER_CONCURRENCY": "0", "CONSUMER_BACKOFF_MAX": "1ms", "CONSUMER_BATCH_SIZE": "-1"}))
	bus.ConsumerConfigFromEnv(e, "crm.sync")
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "CONSUMER_CONCURRENCY") || !strings.Contains(err.Error(), "CONSUMER_BATCH_SIZE") ||
		!strings.Contains(err.Error(), "durable") || !strings.Contains(err.Error(), "BACKOFF") {
		t.Fatalf("bad settings: err = %v", err)
	}
}

func TestConsumerHandlerTimeoutFromEnv(t *testing.T) {
	e := config.New(config.Map(nil))
	cfg := bus.ConsumerConfigFromEnv(e, "billing-state")
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	if got := bus.NewConsumer(nil, cfg, func(context.Context, *bus.Delivery) error { return nil }, bus.ConsumerOptions{}).Config().HandlerTimeout; got != time.Minute {
		t.Fatalf("default handler timeout = %s, want 1m", got)
	}

	e = config.New(config.Map(map[string]string{"CONSUMER_HANDLER_TIMEOUT": "90s"}))
	if got := bus.ConsumerConfigFromEnv(e, "crm-sync").HandlerTimeout; e.Err() != nil || got != 90*time.Second {
		t.Fatalf("CONSUMER_HANDLER_TIMEOUT=90s: %s, %v", got, e.Err())
	}
	for _, bad := range []string{"0", "0s", "-5s", "50ms", "2h", "soon"} {
		e := config.New(config.Map(map[string]string{"CONSUMER_HANDLER_TIMEOUT": bad}))
		bus.ConsumerConfigFromEnv(e, "crm-sync")
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), "CONSUMER_HANDLER_TIMEOUT") {
			t.Errorf("CONSUMER_HANDLER_TIMEOUT=%s: err = %v", bad, err)
		}
	}
}
