package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/config"
)

// Retention of the auxiliary streams. Dead letters wait for an operator,
// so they stay a month; status changes are only for live watchers.
const (
	dlqMaxAge    = 30 * 24 * time.Hour
	statusMaxAge = 7 * 24 * time.Hour
)

// StreamConfig holds the settings shared by every service that provisions
// the streams. Every service must agree, or each start would flip the
// streams between configurations.
type StreamConfig struct {
	Replicas        int
	DuplicateWindow time.Duration
	MaxAge          time.Duration
	Storage         jetstream.StorageType
}

// StreamConfigFromEnv reads NATS_STREAM_REPLICAS (1), NATS_DUPLICATE_WINDOW
// (2h), NATS_MAX_AGE (720h) and NATS_STORAGE (file|memory, file). Parse
// errors are collected in e.
func StreamConfigFromEnv(e *config.Env) StreamConfig {
	c := StreamConfig{
		Replicas:        e.Int("NATS_STREAM_REPLICAS", 1),
		DuplicateWindow: e.Duration("NATS_DUPLICATE_WINDOW", 2*time.Hour),
		MaxAge:          e.Duration("NATS_MAX_AGE", 720*time.Hour),
		Storage:         jetstream.FileStorage,
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
	return c
}

// StreamConfigs returns the three stream definitions EnsureStreams applies.
func StreamConfigs(c StreamConfig) []jetstream.StreamConfig {
	c = c.withDefaults()
	// The server refuses a duplicate window longer than the stream's age.
	dup := func(maxAge time.Duration) time.Duration { return min(c.DuplicateWindow, maxAge) }
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "Verified Stripe events, one message per event id",
			Subjects:    []string{EventsPrefix + ">", ReplayPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      c.MaxAge,
			Duplicates:  dup(c.MaxAge),
			Storage:     c.Storage,
			Replicas:    c.Replicas,
		},
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
}

// EnsureStreams creates the streams or brings them to cfg. Every service
// runs it at start, possibly at the same moment; that is safe.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	for _, sc := range StreamConfigs(cfg) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, sc)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another service created it between our update and create, with a
		// config that differs; now that it exists, an update applies ours.
		_, err = js.CreateOrUpdateStream(ctx, sc)
	}
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", sc.Name, wrapUnavailable(err))
	}
	return nil
}
