package e2e

import (
	"testing"
	"time"

	"github.com/launchready/launchready/test/harness"
)

// TestRestartDuringDatabaseOutage: a service that restarts while its
// database refuses connections (a failover, a maintenance window) must wait
// for it and recover, not exit: in Kubernetes an exit is a crash loop with
// growing back-off, and under compose without a restart policy it is an
// outage that outlives the database's.
func TestRestartDuringDatabaseOutage(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	consumers := []string{"billing-state", "crm-sync", "support-notify"}

	if err := s.CutDatabase(); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = s.RestoreDatabase()
		}
	})
	for _, name := range consumers {
		if err := s.Procs[name].Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the outage a few seconds: long enough for every service to meet
	// it at start-up, short enough for any start-up timeout.
	<-time.After(3 * time.Second)
	if err := s.RestoreDatabase(); err != nil {
		t.Fatal(err)
	}
	restored = true
	for _, name := range consumers {
		if err := s.ReadyErr(name, 60*time.Second); err != nil {
			t.Errorf("%s: not ready after the database came back: %v", name, err)
		}
		if n := s.Procs[name].Crashes(); n != 0 || !s.Procs[name].Running() {
			t.Errorf("%s exited while the database refused connections (exits: %d); it must wait for it:\n%s", name, n, s.Procs[name].Tail(3000))
		}
	}
	// And the system works afterwards.
	b := g.Customer("after", time.Now().Add(-time.Minute))
	evs := purchase(b, 0, 500)
	j := build(t, b)
	deliver(t, s, evs...)
	waitStatus(t, s, j.Customer, active, 60*time.Second)
}
