package canonical

import (
	"math/rand"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func snap(id, typ string, created time.Time, status string) Snapshot {
	return Snapshot{EventID: id, EventType: typ, Created: created, Status: status, PriceID: "price_1"}
}

const (
	created = "customer.subscription.created"
	updated = "customer.subscription.updated"
	deleted = "customer.subscription.deleted"
)

func TestDecideSnapshot(t *testing.T) {
	sec := t0
	later := t0.Add(time.Second)
	withPrev := func(s Snapshot, p Previous) Snapshot { s.Previous = p; return s }
	withCancel := func(s Snapshot, c bool) Snapshot { s.CancelAtPeriodEnd = c; return s }
	del := func(s Snapshot) Snapshot { s.Deleted = true; return s }
	tests := []struct {
		name     string
		stored   Snapshot
		incoming Snapshot
		want     Outcome
		reason   string
	}{
		{"nothing stored", Snapshot{}, snap("evt_1", created, sec, "active"), Apply, ReasonFirst},
		{"same event", snap("evt_1", created, sec, "active"), snap("evt_1", created, sec, "active"), Stale, ReasonDuplicate},
		{"newer wins", snap("evt_1", updated, sec, "active"), snap("evt_2", updated, later, "past_due"), Apply, ReasonNewer},
		{"older is stale", snap("evt_2", updated, later, "past_due"), snap("evt_1", updated, sec, "active"), Stale, ReasonOlder},
		{"older is stale even if more advanced", snap("evt_2", updated, later, "active"), snap("evt_1", updated, sec, "past_due"), Stale, ReasonOlder},
		{
			"chain: incoming follows stored",
			snap("evt_1", updated, sec, "active"),
			withPrev(snap("evt_2", updated, sec, "past_due"), Previous{Status: ptr("active")}),
			Apply, ReasonChain,
		},
		{
			"chain: stored follows incoming",
			withPrev(snap("evt_2", updated, sec, "past_due"), Previous{Status: ptr("active")}),
			snap("evt_1", updated, sec, "active"),
			Stale, ReasonChain,
		},
		{
			"mutual chains prove nothing",
			withPrev(snap("evt_1", updated, sec, "past_due"), Previous{Status: ptr("active")}),
			withPrev(snap("evt_2", updated, sec, "active"), Previous{Status: ptr("past_due")}),
			// Both name each other; nothing proves the order.
			StaleAmbiguous, ReasonMoreAdvanced,
		},
		{
			"chain on cancel_at_period_end",
			snap("evt_1", updated, sec, "active"),
			withPrev(withCancel(snap("evt_2", updated, sec, "active"), true), Previous{CancelAtPeriodEnd: ptr(false)}),
			Apply, ReasonChain,
		},
		{
			"chain needs every named field to match",
			withCancel(snap("evt_1", updated, sec, "active"), true),
			withPrev(snap("evt_2", updated, sec, "past_due"), Previous{Status: ptr("active"), CancelAtPeriodEnd: ptr(false)}),
			ApplyAmbiguous, ReasonMoreAdvanced,
		},
		{
			"incomplete to active at checkout",
			snap("evt_1", created, sec, "incomplete"),
			withPrev(snap("evt_2", updated, sec, "active"), Previous{Status: ptr("incomplete")}),
			Apply, ReasonChain,
		},
		{
			"created precedes an update with untracked previous_attributes",
			withPrev(snap("evt_2", updated, sec, "active"), Previous{}),
			snap("evt_1", created, sec, "active"),
			Stale, ReasonCreatedFirst,
		},
		{
			"update after created in its second",
			snap("evt_1", created, sec, "trialing"),
			snap("evt_2", updated, sec, "trialing"),
			Apply, ReasonCreatedFirst,
		},
		{"same content", snap("evt_1", updated, sec, "active"), snap("evt_2", updated, sec, "active"), Stale, ReasonSameContent},
		{"unordered: incoming more advanced", snap("evt_9", updated, sec, "active"), snap("evt_1", updated, sec, "past_due"), ApplyAmbiguous, ReasonMoreAdvanced},
		{"unordered: stored more advanced", snap("evt_1", updated, sec, "unpaid"), snap("evt_9", updated, sec, "active"), StaleAmbiguous, ReasonMoreAdvanced},
		{"unordered: trial before active", snap("evt_1", updated, sec, "trialing"), snap("evt_2", updated, sec, "active"), ApplyAmbiguous, ReasonMoreAdvanced},
		{"unordered: paused before active", snap("evt_1", updated, sec, "active"), snap("evt_2", updated, sec, "paused"), StaleAmbiguous, ReasonMoreAdvanced},
		{
			"unordered: scheduled cancellation is more advanced",
			snap("evt_2", updated, sec, "active"), withCancel(snap("evt_1", updated, sec, "active"), true),
			ApplyAmbiguous, ReasonMoreAdvanced,
		},
		{"deleted overrides its second", snap("evt_1", updated, sec, "active"), del(snap("evt_2", deleted, sec, "canceled")), Apply, ReasonTerminal},
		{"deleted overrides a newer live snapshot", snap("evt_3", updated, later, "active"), del(snap("evt_2", deleted, sec, "canceled")), Apply, ReasonTerminal},
		{"nothing overrides deleted", del(snap("evt_2", deleted, sec, "canceled")), snap("evt_3", updated, later, "active"), Stale, ReasonTerminal},
		{
			"nothing overrides deleted, not even a chain",
			del(snap("evt_2", deleted, sec, "canceled")),
			withPrev(snap("evt_3", updated, sec, "active"), Previous{Status: ptr("canceled")}),
			Stale, ReasonTerminal,
		},
		{"deleted overrides a canceled update", snap("evt_1", updated, later, "canceled"), del(snap("evt_2", deleted, sec, "canceled")), Apply, ReasonTerminal},
		{"canceled status is terminal", snap("evt_1", updated, sec, "canceled"), snap("evt_2", updated, later, "active"), Stale, ReasonTerminal},
		{"incomplete_expired is terminal", snap("evt_1", updated, sec, "incomplete"), snap("evt_2", updated, sec, "incomplete_expired"), Apply, ReasonTerminal},
		{"two canceled: newer", snap("evt_1", updated, sec, "canceled"), snap("evt_2", updated, later, "canceled"), Apply, ReasonNewer},
		{"two canceled same second: by id", snap("evt_2", updated, sec, "canceled"), snap("evt_1", updated, sec, "canceled"), Stale, ReasonTerminalTie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideSnapshot(tt.stored, tt.incoming)
			if d.Outcome != tt.want || d.Reason != tt.reason {
				t.Fatalf("DecideSnapshot = %v (%s), want %v (%s)", d.Outcome, d.Reason, tt.want, tt.reason)
			}
			if d.Applies() != (tt.want == Apply || tt.want == ApplyAmbiguous) {
				t.Errorf("Applies() = %v for %v", d.Applies(), d.Outcome)
			}
			if d.Ambiguous() != (tt.want == ApplyAmbiguous || tt.want == StaleAmbiguous) {
				t.Errorf("Ambiguous() = %v for %v", d.Ambiguous(), d.Outcome)
			}
		})
	}
}

// fold applies snapshots in the given order, as a consumer would.
func fold(snaps []Snapshot) Snapshot {
	var stored Snapshot
	for _, s := range snaps {
		if DecideSnapshot(stored, s).Applies() {
			stored = s
		}
	}
	return stored
}

// TestShuffledJourneysConverge delivers realistic subscription journeys, with
// same-second ties, in many orders with duplicates and checks every order
// ends where in-order delivery ends.
func TestShuffledJourneysConverge(t *testing.T) {
	s := func(id, typ string, sec int, status string, cancel bool, prev Previous) Snapshot {
		return Snapshot{EventID: id, EventType: typ, Created: t0.Add(time.Duration(sec) * time.Second),
			Status: status, CancelAtPeriodEnd: cancel, PriceID: "price_1", Previous: prev, Deleted: typ == deleted}
	}
	journeys := map[string][]Snapshot{
		"checkout to canceled": {
			s("evt_a1", created, 0, "incomplete", false, Previous{}),
			s("evt_a2", updated, 0, "active", false, Previous{Status: ptr("incomplete")}), // same second as created
			s("evt_a3", updated, 30, "past_due", false, Previous{Status: ptr("active")}),
			s("evt_a4", updated, 31, "active", false, Previous{Status: ptr("past_due")}),
			s("evt_a5", updated, 31*24*3600, "active", true, Previous{CancelAtPeriodEnd: ptr(false)}),
			s("evt_a6", deleted, 62*24*3600, "canceled", true, Previous{}),
		},
		"trial to active, same second": {
			s("evt_b1", created, 0, "trialing", false, Previous{}),
			s("evt_b2", updated, 100, "active", false, Previous{Status: ptr("trialing")}),
			s("evt_b3", updated, 100, "active", true, Previous{CancelAtPeriodEnd: ptr(false)}),
		},
		"delete in the second of an update": {
			s("evt_c1", created, 0, "active", false, Previous{}),
			s("evt_c2", updated, 5, "past_due", false, Previous{Status: ptr("active")}),
			s("evt_c3", deleted, 5, "canceled", false, Previous{}),
		},
	}
	for name, journey := range journeys {
		want := fold(journey)
		for seed := int64(0); seed < 200; seed++ {
			r := rand.New(rand.NewSource(seed))
			in := append([]Snapshot(nil), journey...)
			for i := 0; i < 1+r.Intn(3); i++ { // duplicates, as at-least-once delivery gives
				in = append(in, journey[r.Intn(len(journey))])
			}
			r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			if got := fold(in); got.EventID != want.EventID {
				t.Fatalf("%s seed %d: ended at %s (%s), in order ends at %s (%s)", name, seed, got.EventID, got.Status, want.EventID, want.Status)
			}
		}
	}
	if got := fold(journeys["checkout to canceled"]); !got.Deleted {
		t.Errorf("checkout journey should end deleted, got %+v", got)
	}
	if got := fold(journeys["trial to active, same second"]); got.EventID != "evt_b3" {
		t.Errorf("trial journey should end at evt_b3, got %s", got.EventID)
	}
}

func TestLifecycleRankOrder(t *testing.T) {
	order := []string{"incomplete", "trialing", "paused", "active", "past_due", "unpaid", "canceled"}
	for i := 1; i < len(order); i++ {
		if LifecycleRank(order[i-1]) >= LifecycleRank(order[i]) {
			t.Errorf("rank(%s) should be below rank(%s)", order[i-1], order[i])
		}
	}
	if LifecycleRank("incomplete_expired") != LifecycleRank("canceled") || LifecycleRank("nope") != 0 {
		t.Error("incomplete_expired ranks with canceled; unknown ranks 0")
	}
}
