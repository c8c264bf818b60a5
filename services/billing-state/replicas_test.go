package billingstate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/httpserver"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/journey"
)

// lockedBuffer collects one replica's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// handledAt reads the "event handled" lines of a replica's debug log: for
// each customer, when this replica applied each of its events.
func handledAt(t *testing.T, logs []byte) map[string][]time.Time {
	t.Helper()
	out := map[string][]time.Time{}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time       time.Time `json:"time"`
			Msg        string    `json:"msg"`
			CustomerID string    `json:"customer_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Msg != "event handled" || line.CustomerID == "" {
			continue
		}
		out[line.CustomerID] = append(out[line.CustomerID], line.Time)
	}
	return out
}

// TestTwoReplicasApplyOneCustomersEventsAtOnce runs two billing-state
// processes on one durable and one database and publishes each customer's
// whole journey, shuffled, in one burst, so that both replicas receive the
// same customer's events in the same instant; many rounds over. Every
// customer must end in its journey's final status, and the run must show
// that both replicas did apply one customer's events in the same second.
func TestTwoReplicasApplyOneCustomersEventsAtOnce(t *testing.T) {
	var logs [2]lockedBuffer
	debug := func(i int) *slog.Logger {
		return slog.New(slog.NewJSONHandler(&logs[i], &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h := start(t, func(c *Config) {
		c.Logger = debug(0)
		c.Consumer.Concurrency = 4
	})
	second := h.cfg
	second.Logger = debug(1)
	second.Registry = httpserver.NewRegistry()
	h.launch(second)

	const rounds = 25
	names := make([]string, 0, len(journey.Journeys))
	for name := range journey.Journeys {
		names = append(names, name)
	}
	sort.Strings(names)
	want := map[string]journey.Step{}
	r := rand.New(rand.NewSource(19))
	for round := range rounds {
		var burst []bus.Message
		for _, name := range names {
			cus := fmt.Sprintf("cus_rep%02d%s", round, strings.ReplaceAll(name, " ", ""))
			steps := journey.Journeys[name](journey.New(t, cus, base))
			want[cus] = steps[len(steps)-1]
			evs := journey.Events(steps)
			r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			for _, ev := range evs {
				burst = append(burst, eventMessage(t, ev))
			}
		}
		if _, err := h.pub.PublishAll(h.ctx, burst); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}

	for cus, step := range want {
		h.eventually(60*time.Second, "final status of "+cus, func() bool {
			st := h.statusOf(cus)
			return st != nil && st.GetStatus() == step.Status && st.GetEntitled() == step.Entitled &&
				st.GetDisputeOpen() == step.DisputeOpen && st.GetCancelAtPeriodEnd() == step.Cancel
		})
	}
	h.eventually(30*time.Second, "the consumer to drain", h.drained)

	a, b := handledAt(t, logs[0].Bytes()), handledAt(t, logs[1].Bytes())
	shared, sameSecond := 0, 0
	for cus := range want {
		if len(a[cus]) == 0 || len(b[cus]) == 0 {
			continue
		}
		shared++
		if closest(a[cus], b[cus]) < time.Second {
			sameSecond++
		}
	}
	t.Logf("%d customers; %d had events applied by both replicas, %d of them within one second", len(want), shared, sameSecond)
	if sameSecond == 0 {
		t.Fatalf("no customer had events applied by both replicas within a second (replica 0 applied for %d customers, replica 1 for %d): the test did not exercise the race", len(a), len(b))
	}
}

// closest is the smallest distance between a time in xs and one in ys.
func closest(xs, ys []time.Time) time.Duration {
	best := time.Duration(1<<63 - 1)
	for _, x := range xs {
		for _, y := range ys {
			d := x.Sub(y)
			if d < 0 {
				d = -d
			}
			best = min(best, d)
		}
	}
	return best
}

// eventMessage is ev as ingress publishes it.
func eventMessage(t *testing.T, ev *billingv1.BillingEvent) bus.Message {
	t.Helper()
	subject, err := bus.CheckedEventSubject(ev.GetType())
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{Subject: subject, MsgID: ev.GetEventId(), Data: data}
}
