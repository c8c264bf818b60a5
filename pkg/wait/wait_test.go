package wait

import (
	"context"
	"testing"
	"time"
)

func TestSleepElapses(t *testing.T) {
	start := time.Now()
	if !Sleep(context.Background(), 20*time.Millisecond) {
		t.Fatal("Sleep on a live context reported it was cut short")
	}
	if got := time.Since(start); got < 20*time.Millisecond {
		t.Fatalf("Sleep returned after %v, before its 20ms", got)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	if Sleep(ctx, time.Minute) {
		t.Fatal("Sleep reported a full minute elapsed")
	}
	if got := time.Since(start); got > 5*time.Second {
		t.Fatalf("Sleep outlived its context by %v", got)
	}
}

func TestSleepWithoutDuration(t *testing.T) {
	if !Sleep(context.Background(), 0) {
		t.Fatal("a zero sleep on a live context must report true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, -time.Second) {
		t.Fatal("a zero sleep on an ended context must report false")
	}
}
