package catchup

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/harness"
)

// TestBackfillKilledHalfwayResumesFromItsMark runs `launchready backfill
// --since 1h` as its own process and kills it (SIGKILL) while it publishes
// the third of five pages, as an OOM kill or a lost node would. The run's
// mark in backfill.runs says what it had fully read; a later `launchready
// backfill`, without a window, goes back for the rest of the interrupted
// window (the older events) from that mark, and every consumer applies
// every event exactly once.
func TestBackfillKilledHalfwayResumesFromItsMark(t *testing.T) {
	const customers, total = 50, 450
	harness.Binaries(t)
	bin := harness.Launchready(t)
	js, evs := outage(t, customers, total, time.Now().Add(-40*time.Minute))
	s := harness.StartStack(t, harness.StackOptions{LogLevel: "warn"})
	fake, env := newStripe(t, s, evs)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, out, errs := command(ctx, bin, env, "backfill", "--since", "1h")
	var once sync.Once
	var how string
	kill := func(why string) {
		once.Do(func() {
			how = why
			_ = cmd.Process.Kill()
		})
	}
	// Should the third page be stored before the kill lands, the fourth
	// page's request is the last moment to kill it halfway.
	var pages int
	var mu sync.Mutex
	fake.OnRequest(func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/v1/events" {
			if pages++; pages == 4 {
				kill("at the request for page 4")
			}
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
			if n, err := s.StreamMsgs(bus.StreamEvents); err == nil && n >= 250 {
				kill(fmt.Sprintf("with %d events in the stream", n))
				return
			}
		}
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatal("the backfill neither finished nor was killed")
	}
	fake.OnRequest(nil)
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the first backfill ended with %v, not killed (%s)\n%s%s", cmd.ProcessState, how, out, errs)
	}
	stored, err := s.StreamMsgs(bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var windowStart, mark time.Time
	var published int
	var done *time.Time
	if err := s.DB.QueryRow(ctx, `SELECT id, window_start, next_until, published, completed_at FROM backfill.runs`).
		Scan(&id, &windowStart, &mark, &published, &done); err != nil {
		t.Fatalf("backfill.runs after the kill: %v", err)
	}
	t.Logf("killed %s: %d events in the stream, run %d marked read down to %s (%d published by its record)",
		how, stored, id, mark.Format(time.RFC3339), published)
	if done != nil || published < 100 || int(stored) < published || int(stored) >= total { // #nosec G115 -- a few hundred
		t.Fatalf("after the kill: completed %v, %d recorded published, %d stored; want an unfinished run with at least a page done", done, published, stored)
	}
	// The mark is honest: every event newer than it is stored, and what
	// is left to read is every event at or before it.
	left := 0
	for _, e := range evs {
		if !e.Created.After(mark) {
			left++
		}
	}
	if total-left > int(stored) { // #nosec G115 -- a few hundred
		t.Fatalf("%d events are newer than the mark, but only %d are stored", total-left, stored)
	}

	// Started again, with no window of its own: it continues the run.
	before := len(fake.Requests())
	code, stdout, stderr := backfill(t, bin, env)
	if code != 0 {
		t.Fatalf("resumed backfill: exit %d\n%s%s", code, stdout, stderr)
	}
	reqs := fake.Requests()[before:]
	if q := reqs[0].Query; q.Get("created[lte]") != fmt.Sprint(mark.Unix()) || q.Get("created[gte]") != fmt.Sprint(windowStart.Unix()) || q.Get("starting_after") != "" {
		t.Fatalf("resumed with %v, want created[gte]=%d created[lte]=%d (the window's start and the mark)", q, windowStart.Unix(), mark.Unix())
	}
	fresh := total - int(stored) // #nosec G115 -- a few hundred
	want := fmt.Sprintf("read %d events", left)
	wantCounts := fmt.Sprintf("%d published, %d already known, 0 skipped", fresh, left-fresh)
	if !strings.Contains(stdout, "continued 1 interrupted run") || !strings.Contains(stdout, want) || !strings.Contains(stdout, wantCounts) {
		t.Fatalf("resumed backfill summary, want %q and %q:\n%s", want, wantCounts, stdout)
	}
	t.Logf("resumed: %d requests\n%s", len(reqs), stdout)
	if n := s.Count(`SELECT count(*) FROM backfill.runs WHERE completed_at IS NULL`); n != 0 {
		t.Fatalf("%d runs still unfinished", n)
	}
	fromAPIOnly(t, s, total)
	// Each consumer recorded each event it handles exactly once.
	settle(t, s, js)
	if n := s.Count(`SELECT count(*) FROM (SELECT event_id FROM billing.audit_log WHERE actor = 'stripe' GROUP BY event_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("billing.audit_log: %d events applied more than once", n)
	}
	if n := s.Count(`SELECT count(*) FROM billing.customers`); n != customers {
		t.Errorf("billing.customers: %d rows, want %d", n, customers)
	}
}
