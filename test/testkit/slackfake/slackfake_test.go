package slackfake

import (
	"testing"
	"time"
)

func TestPacerRefusesFastMessagesAndCountsIgnoredRetryAfter(t *testing.T) {
	p := NewPacer(time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, _ := p.Admit(t0); !ok {
		t.Fatal("first message refused")
	}
	ok, ra := p.Admit(t0.Add(300 * time.Millisecond))
	if ok || ra != "1" {
		t.Fatalf("message 300ms later: ok=%v Retry-After=%q, want refused with 1", ok, ra)
	}
	// Arriving before the Retry-After ran out counts as not honouring it,
	// even when the pace would allow it.
	if ok, _ := p.Admit(t0.Add(1100 * time.Millisecond)); !ok {
		t.Fatal("message after the interval refused")
	}
	if ok, _ := p.Admit(t0.Add(2400 * time.Millisecond)); !ok {
		t.Fatal("message after the Retry-After refused")
	}
	if s := p.Stats(); s != (Stats{Admitted: 3, Refused: 1, Unanswered: 1}) {
		t.Fatalf("stats %+v", s)
	}
}
