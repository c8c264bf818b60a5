package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestReplayGoesOnlyToItsConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var failing atomic.Bool
	failing.Store(true)
	var recA, recB recorder
	b.run(t, quiet("svc-a"), func(_ context.Context, d *bus.Delivery) error {
		recA.add(d)
		if failing.Load() {
			return bus.Permanent(errors.New("unknown plan"))
		}
		return nil
	}, bus.ConsumerOptions{})
	b.run(t, quiet("svc-b"), func(_ context.Context, d *bus.Delivery) error {
		recB.add(d)
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_replay", "checkout.session.completed", "cus_4"))

	var dls []bus.DeadLetter
	testkit.Eventually(t, 10*time.Second, "dead letter from svc-a", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "svc-a", 10)
		return err == nil && len(dls) == 1
	})
	testkit.Eventually(t, 10*time.Second, "svc-b handled the event", func() bool { return recB.len() == 1 && settled(t, b.js, "svc-b") })
	if others, _ := bus.ListDeadLetters(testCtx(t), b.js, "svc-b", 10); len(others) != 0 {
		t.Fatalf("svc-b has %d dead letters", len(others))
	}

	failing.Store(false) // the fix is deployed
	dl, err := bus.ReplayDeadLetter(testCtx(t), b.js, dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if dl.EventID != "evt_replay" || dl.Consumer != "svc-a" {
		t.Fatalf("replayed = %+v", dl)
	}
	testkit.Eventually(t, 10*time.Second, "replay handled by svc-a", func() bool { return recA.len() == 2 && settled(t, b.js, "svc-a") })
	got, _ := recA.snapshot()
	r := got[1]
	if !r.Replay || r.Subject != "billing.replay.svc-a.checkout.session.completed" || r.Event.EventId != "evt_replay" || r.Delivered != 1 {
		t.Fatalf("replayed delivery = %+v", r)
	}
	if r.Header.Get("Lr-Replay-Of") != strconv.FormatUint(dls[0].Seq, 10) {
		t.Fatalf("replay header = %v", r.Header)
	}

	// svc-b's filter excludes the replay: nothing new was ever pending for it.
	info := consumerInfo(t, b.js, "svc-b")
	if info.NumPending != 0 || info.Delivered.Consumer != 1 || recB.len() != 1 {
		t.Fatalf("svc-b saw the replay: pending %d delivered %d handled %d", info.NumPending, info.Delivered.Consumer, recB.len())
	}
	if left, _ := bus.ListDeadLetters(testCtx(t), b.js, "", 10); len(left) != 0 {
		t.Fatalf("%d dead letters left after replay", len(left))
	}
	if _, err := bus.ReplayDeadLetter(testCtx(t), b.js, dls[0].Seq); !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Fatalf("second replay: err = %v, want ErrDeadLetterNotFound", err)
	}
}

func TestListDeadLettersFiltersAndLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, c := range []string{"x", "y", "x", "x"} {
		hdr := nats.Header{"Lr-Consumer": {c}, "Lr-Event-Id": {fmt.Sprintf("evt_%d", i)}, "Lr-Delivery-Count": {"2"}}
		if _, err := b.pub.Publish(testCtx(t), bus.DLQSubject(c), "", []byte("p"), hdr); err != nil {
			t.Fatal(err)
		}
	}
	all, err := bus.ListDeadLetters(testCtx(t), b.js, "", 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("all = %d, %v", len(all), err)
	}
	xs, err := bus.ListDeadLetters(testCtx(t), b.js, "x", 2)
	if err != nil || len(xs) != 2 || xs[0].EventID != "evt_0" || xs[1].EventID != "evt_2" || xs[0].Delivered != 2 {
		t.Fatalf("x limited to 2 = %+v, %v", xs, err)
	}
	if _, err := bus.ListDeadLetters(testCtx(t), b.js, "a.b", 1); err == nil {
		t.Fatal("a dotted consumer name was accepted")
	}
}

// A dead letter's headers are written by whoever publishes to billing.dlq:
// replay must not turn them into a subject the server would refuse.
func TestReplayRefusesAForgedDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	for i, hdr := range []nats.Header{
		{"Lr-Consumer": {"crm-sync"}, "Lr-Event-Type": {strings.Repeat("x", 5000)}},
		{"Lr-Consumer": {"crm-sync"}, "Lr-Event-Type": {"invoice.>"}},
		{"Lr-Consumer": {"crm.sync"}, "Lr-Event-Type": {"invoice.paid"}},
	} {
		res, err := b.pub.Publish(ctx, bus.DLQSubject("crm-sync"), "", []byte("p"), hdr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.ReplayDeadLetter(ctx, b.js, res.Seq); !errors.Is(err, bus.ErrInvalidSubject) {
			t.Errorf("forged dead letter %d: err = %.200v, want ErrInvalidSubject", i, err)
		}
	}
	if n := streamMsgs(t, b.js, bus.StreamDLQ); n != 3 {
		t.Fatalf("DLQ holds %d, want the 3 refused dead letters kept", n)
	}
	if !b.nc.IsConnected() {
		t.Fatal("connection lost")
	}
	if _, err := bus.ListDeadLetters(ctx, b.js, strings.Repeat("c", 5000), 1); !errors.Is(err, bus.ErrInvalidSubject) {
		t.Fatalf("ListDeadLetters for a 5000-byte consumer: %.200v", err)
	}
}

func TestGetAndDiscardDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, c := range []string{"x", "y"} {
		hdr := nats.Header{"Lr-Consumer": {c}, "Lr-Event-Id": {fmt.Sprintf("evt_%d", i)}, "Lr-Error": {"bad payload"}}
		if _, err := b.pub.Publish(testCtx(t), bus.DLQSubject(c), "", []byte("p"), hdr); err != nil {
			t.Fatal(err)
		}
	}
	all, err := bus.ListDeadLetters(testCtx(t), b.js, "", 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("all = %d, %v", len(all), err)
	}
	got, err := bus.GetDeadLetter(testCtx(t), b.js, all[0].Seq)
	if err != nil || got.EventID != "evt_0" || got.Consumer != "x" || got.Error != "bad payload" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	dl, err := bus.DiscardDeadLetter(testCtx(t), b.js, all[0].Seq)
	if err != nil || dl.EventID != "evt_0" {
		t.Fatalf("discard = %+v, %v", dl, err)
	}
	if _, err := bus.DiscardDeadLetter(testCtx(t), b.js, all[0].Seq); !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Fatalf("second discard: %v, want ErrDeadLetterNotFound", err)
	}
	if _, err := bus.GetDeadLetter(testCtx(t), b.js, all[0].Seq); !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Fatalf("get after discard: %v, want ErrDeadLetterNotFound", err)
	}
	if left, err := bus.ListDeadLetters(testCtx(t), b.js, "", 0); err != nil || len(left) != 1 || left[0].EventID != "evt_1" {
		t.Fatalf("left = %+v, %v", left, err)
	}
}
