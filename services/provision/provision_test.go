package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/services/provision"
)

// The step connects as admin unless told otherwise, and makes the streams
// with the deployment's settings where there were none.
func TestRunMakesTheStreams(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, observer, err := bus.Connect(ctx, srv.Conn(natstest.Observer), "observer", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, s := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus} {
		if err := observer.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	env := srv.Env(natsauth.Admin)
	delete(env, "NATS_USER")
	env["NATS_MAX_AGE"], env["NATS_DUPLICATE_WINDOW"] = "48h", "30m"
	cfg, err := provision.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.User != natsauth.Admin || cfg.Timeout != 2*time.Minute {
		t.Fatalf("config: user %q timeout %s", cfg.NATS.User, cfg.Timeout)
	}
	if err := provision.Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus} {
		if _, err := observer.Stream(ctx, s); err != nil {
			t.Errorf("%s after provisioning: %v", s, err)
		}
	}
	st, err := observer.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.MaxAge != 48*time.Hour || c.Duplicates != 30*time.Minute {
		t.Errorf("BILLING_EVENTS max age %s duplicates %s, want the environment's 48h and 30m", c.MaxAge, c.Duplicates)
	}
}

func TestConfigFromEnvRejectsBadSettings(t *testing.T) {
	_, err := provision.ConfigFromEnv(config.Map(map[string]string{"PROVISION_TIMEOUT": "-1s", "NATS_STREAM_REPLICAS": "9"}))
	if err == nil {
		t.Fatal("bad settings accepted")
	}
}
