package bus_test

import (
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
