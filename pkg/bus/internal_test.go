package bus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRedactErrorBoundsAndKeepsUTF8(t *testing.T) {
	long := errors.New(strings.Repeat("é", 2000) + " sk_live_" + strings.Repeat("q", 30))
	got := redactError(long)
	if len(got) > maxErrorBytes || !utf8.ValidString(got) {
		t.Fatalf("len %d, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	// Redaction happens before the cut: the secret's head is never kept.
	cut := errors.New(strings.Repeat("x", maxErrorBytes-12) + " sk_live_" + strings.Repeat("q", 30))
	if got := redactError(cut); strings.Contains(got, "qqq") {
		t.Fatalf("truncated error leaks part of a key: %q", got[len(got)-40:])
	}
}

func TestOutcomeErrors(t *testing.T) {
	base := errors.New("boom")
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) should be nil")
	}
	p := Permanent(base)
	if !IsPermanent(p) || !errors.Is(p, base) || p.Error() != "boom" {
		t.Fatalf("Permanent = %v", p)
	}
	if IsPermanent(base) {
		t.Fatal("plain error reported permanent")
	}
	r := RetryAfter(base, 3*time.Second)
	if d, ok := retryAfter(r); !ok || d != 3*time.Second || !errors.Is(r, base) {
		t.Fatalf("RetryAfter = %v, %v, %v", r, d, ok)
	}
	if _, ok := retryAfter(base); ok {
		t.Fatal("plain error carries a retry delay")
	}
	if d, ok := RetryAfterDelay(fmt.Errorf("send: %w", r)); !ok || d != 3*time.Second {
		t.Fatalf("RetryAfterDelay of a wrapped RetryAfter = %v, %v", d, ok)
	}
}
