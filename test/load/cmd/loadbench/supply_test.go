package main

import (
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/harness/scenario"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestSupplyRenamesEveryID: each copy of the pool is a new set of events
// of new customers (a repeated id would be deduplicated by ingress and
// inflate the measured rate), and still normalises.
func TestSupplyRenamesEveryID(t *testing.T) {
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, baseTag)
	if err != nil {
		t.Fatal(err)
	}
	js, err := scenario.Mix(g, 20, 200, time.Now().Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sup := &supply{}
	for _, e := range scenario.InOrder(js) {
		sup.pool = append(sup.pool, e.Raw)
	}
	events, customers := map[string]bool{}, map[string]bool{}
	for range 3 * len(sup.pool) {
		ev, err := stripeevent.Normalize(sup.next())
		if err != nil {
			t.Fatal(err)
		}
		if events[ev.GetEventId()] {
			t.Fatalf("event id %s handed out twice", ev.GetEventId())
		}
		events[ev.GetEventId()] = true
		if ev.GetCustomerId() != "" {
			customers[ev.GetCustomerId()] = true
		}
	}
	if len(customers) != 3*20 {
		t.Fatalf("%d customers across three copies, want 60", len(customers))
	}
}
