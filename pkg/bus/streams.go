package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/wait"
)

// Retention of the auxiliary streams. Dead letters wait for an operator,
// so they stay a month; status changes are only for live watchers.
const (
	dlqMaxAge    = 30 * 24 * time.Hour
	statusMaxAge = 7 * 24 * time.Hour
)

// defaultStreamWait is long enough for a provisioning Job scheduled beside
// the services to pull its image and run; past it a service exits, and its
// restart policy brings it back to wait again.
const defaultStreamWait = 2 * time.Minute

// StreamConfig holds the streams' settings. The provisioning step applies
// them; a service reads the same variables to tell the operator when its
// settings and the provisioned streams differ (EnsureStreams).
type StreamConfig struct {
	Replicas        int
	DuplicateWindow time.Duration
	MaxAge          time.Duration
	Storage         jetstream.StorageType
	// Wait bounds how long a service waits at start for the provisioning
	// step to have made the streams (EnsureStreams).
	Wait time.Duration
}

// StreamConfigFromEnv reads NATS_STREAM_REPLICAS (1), NATS_DUPLICATE_WINDOW
// (2h), NATS_MAX_AGE (720h), NATS_STORAGE (file|memory, file) and
// NATS_STREAM_WAIT (2m). Parse errors are collected in e.
func StreamConfigFromEnv(e *config.Env) StreamConfig {
	c := StreamConfig{
		Replicas:        e.Int("NATS_STREAM_REPLICAS", 1),
		DuplicateWindow: e.Duration("NATS_DUPLICATE_WINDOW", 2*time.Hour),
		MaxAge:          e.Duration("NATS_MAX_AGE", 720*time.Hour),
		Storage:         jetstream.FileStorage,
		Wait:            e.Duration("NATS_STREAM_WAIT", defaultStreamWait),
	}
	if e.OneOf("NATS_STORAGE", "file", "file", "memory") == "memory" {
		c.Storage = jetstream.MemoryStorage
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		e.Fail("NATS_STREAM_REPLICAS: %d is not between 1 and 5", c.Replicas)
	}
	if c.DuplicateWindow <= 0 {
		e.Fail("NATS_DUPLICATE_WINDOW: must be positive")
	}
	if c.MaxAge <= 0 {
		e.Fail("NATS_MAX_AGE: must be positive")
	}
	if c.Wait <= 0 {
		e.Fail("NATS_STREAM_WAIT: must be positive")
	}
	return c
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Replicas < 1 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Hour
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 720 * time.Hour
	}
	if c.Wait <= 0 {
		c.Wait = defaultStreamWait
	}
	return c
}

// StreamConfigs returns the stream definitions ProvisionStreams applies:
// BILLING_EVENTS first, then the dead letters and the status changes, and
// on a replicated setup (Replicas > 1) BILLING_EVENTS_STANDBY last.
//
// The standby exists because a replicated stream whose leader's node dies
// takes no message until its followers elect a new leader, and JetStream's
// election timeout is 4 to 9 s, which no setting changes. The standby is a
// second stream of its own raft group, kept led from another node
// (SeparateStandbyLeader), that BILLING_EVENTS sources: an event a
// publisher could not store in BILLING_EVENTS is stored there instead, and
// reaches BILLING_EVENTS, under its billing.events subject and with its
// Nats-Msg-Id (so a copy stored both ways is kept once), as soon as
// BILLING_EVENTS has a leader again.
func StreamConfigs(c StreamConfig) []jetstream.StreamConfig {
	c = c.withDefaults()
	// The server refuses a duplicate window longer than the stream's age.
	dup := func(maxAge time.Duration) time.Duration { return min(c.DuplicateWindow, maxAge) }
	events := jetstream.StreamConfig{
		Name:        StreamEvents,
		Description: "Verified Stripe events, one message per event id",
		Subjects:    []string{EventsPrefix + ">", ReplayPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		Duplicates:  dup(c.MaxAge),
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	}
	if c.Replicas > 1 {
		events.Sources = []*jetstream.StreamSource{{
			Name: StreamStandby,
			SubjectTransforms: []jetstream.SubjectTransformConfig{{
				Source: StandbyPrefix + ">", Destination: "billing.>",
			}},
		}}
	}
	all := []jetstream.StreamConfig{
		events,
		{
			Name:        StreamDLQ,
			Description: "Events a consumer gave up on, with the reason",
			Subjects:    []string{DLQPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      dlqMaxAge,
			// Dead letters are deduplicated by <durable>:<seq>, so a crash
			// between the DLQ publish and the Term never stores two; the
			// redelivery can come much later than the default 2 minutes.
			Duplicates: dup(dlqMaxAge),
			Storage:    c.Storage,
			Replicas:   c.Replicas,
		},
		{
			Name:        StreamStatus,
			Description: "Customer billing status changes, from the billing-state outbox",
			Subjects:    []string{StatusPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      statusMaxAge,
			Duplicates:  dup(statusMaxAge),
			Storage:     c.Storage,
			Replicas:    c.Replicas,
		},
	}
	if c.Replicas > 1 {
		all = append(all, jetstream.StreamConfig{
			Name:        StreamStandby,
			Description: "Events stored while BILLING_EVENTS elected a leader; BILLING_EVENTS sources them",
			Subjects:    []string{StandbyPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			// As long as the events themselves: an event waits here until
			// BILLING_EVENTS can take it, however long that is.
			MaxAge:     c.MaxAge,
			Duplicates: dup(c.MaxAge),
			Storage:    c.Storage,
			Replicas:   c.Replicas,
		})
	}
	return all
}

// EnsureStreams makes sure the streams are there before a service uses
// them. Streams belong to the provisioning step (`launchready provision`,
// run by the admin user), and a service's user may not create them: on a
// connection that authenticates, EnsureStreams waits until BILLING_EVENTS
// exists, which provisioning creates last, for at most cfg.Wait (and no
// longer than ctx), logging while it waits. On a server without
// authentication, where nothing restricts who creates streams (a developer's
// NATS_URL, the library's own tests), it provisions them itself as
// ProvisionStreams does.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	c, ok := js.(*connectedJS)
	if !ok || c.provisions {
		return ProvisionStreams(ctx, js, cfg)
	}
	return waitStreams(ctx, c, cfg.withDefaults())
}

// waitPoll is how often waitStreams asks again for a missing stream.
const waitPoll = time.Second

func waitStreams(ctx context.Context, c *connectedJS, cfg StreamConfig) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Wait)
	defer cancel()
	start := time.Now()
	var lastLog time.Time
	for {
		st, err := c.Stream(ctx, StreamEvents)
		if err == nil {
			if time.Since(start) > waitPoll {
				c.log.Info("stream provisioned; starting", "stream", StreamEvents, "waited", time.Since(start).Round(time.Millisecond).String())
			}
			warnIfDifferent(c.log, st.CachedInfo().Config, StreamConfigs(cfg)[0])
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream %s: not there after %s (has `launchready provision` run?): %w",
				StreamEvents, time.Since(start).Round(time.Second), wrapUnavailable(err))
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !connectionTrouble(err) {
			return fmt.Errorf("stream %s: %w", StreamEvents, err)
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			c.log.Warn("waiting for the streams to be provisioned (launchready provision)", "stream", StreamEvents,
				"error", Redact(err.Error()), "gives_up_in", (cfg.Wait - time.Since(start)).Round(time.Second).String())
		}
		if !wait.Sleep(ctx, waitPoll) {
			continue // the next lookup reports the deadline
		}
	}
}

// warnIfDifferent tells the operator when a service's NATS_* stream
// settings differ from the stream the provisioning step made: the stream's
// settings are the ones in force.
func warnIfDifferent(log *slog.Logger, have, want jetstream.StreamConfig) {
	if have.Replicas != want.Replicas || have.MaxAge != want.MaxAge || have.Duplicates != want.Duplicates || have.Storage != want.Storage {
		log.Warn("stream settings differ from this service's NATS_* settings; the provisioned ones apply",
			"stream", have.Name, "replicas", have.Replicas, "max_age", have.MaxAge.String(),
			"duplicate_window", have.Duplicates.String(), "storage", have.Storage.String(),
			"want_replicas", want.Replicas, "want_max_age", want.MaxAge.String(),
			"want_duplicate_window", want.Duplicates.String(), "want_storage", want.Storage.String())
	}
}

// ProvisionStreams creates the streams or brings them to cfg. It is the
// provisioning step's work, done with the admin user; running it twice, or
// from two places at once, is safe. BILLING_EVENTS comes last, so that a
// service that sees it (EnsureStreams) finds the others there too (the
// standby it sources included). On a replicated setup it then moves the
// standby's leader off the events stream's node (SeparateStandbyLeader).
func ProvisionStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	all := StreamConfigs(cfg)
	for _, sc := range append(all[1:], all[0]) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	if cfg.Replicas > 1 {
		if _, err := SeparateStandbyLeader(ctx, js); err != nil {
			return fmt.Errorf("provision: %w", err)
		}
	}
	return nil
}

// Provision connects as cc (the admin user), provisions the streams and
// disconnects: `launchready provision`, and what tests do before they start
// a service.
func Provision(ctx context.Context, cc ConnConfig, cfg StreamConfig, log *slog.Logger) error {
	nc, js, err := Connect(ctx, cc, "launchready-provision", log)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	defer nc.Close()
	if err := ProvisionStreams(ctx, js, cfg); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, sc)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another provisioner created it between our update and create, with
		// a config that differs; now that it exists, an update applies ours.
		_, err = js.CreateOrUpdateStream(ctx, sc)
	}
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, wrapUnavailable(err))
	}
	return nil
}
