package webhook

import (
	"bytes"
	"net/http"
	"runtime"
	"testing"
)

// TestLargeBuffersAreReusedAndReleased: a buffer comes back from put, the
// same memory is handed out again, and on Linux it is off the heap and its
// written pages read as zeros once released.
func TestLargeBuffersAreReusedAndReleased(t *testing.T) {
	const maxBody = 256 << 10
	l := newLargeBuffers(2, maxBody)
	lb := l.get()
	if cap(lb.b) != maxBody+1 || len(lb.b) != 0 {
		t.Fatalf("buffer len %d cap %d, want empty with room for MaxBody+1", len(lb.b), cap(lb.b))
	}
	if lb.mapped != (runtime.GOOS == "linux") {
		t.Fatalf("mapped = %v on %s", lb.mapped, runtime.GOOS)
	}
	body := append(lb.b, bytes.Repeat([]byte{'x'}, 100<<10)...)
	l.put(lb, len(body))

	again := l.get()
	if &again.b[:1][0] != &body[0] {
		t.Fatal("put buffer was not handed out again")
	}
	if lb.mapped && !bytes.Equal(again.b[:len(body)], make([]byte, len(body))) {
		t.Fatal("released pages still hold the old body")
	}
}

// TestLargeBodyBufferGoesBackAfterTheRequest: a request in the long class
// reads into a large buffer and returns it, whatever its answer.
func TestLargeBodyBufferGoesBackAfterTheRequest(t *testing.T) {
	f := newFixture(t, false, func(c *Config) { c.ShortBody = 1024 })
	payload := append(event("evt_large", "customer.created", "cus_large"), bytes.Repeat([]byte(" "), 2048)...)
	for range 3 {
		if rec := f.serve(f.request(payload)); rec.Code != http.StatusOK {
			t.Fatalf("large signed event: %d %s", rec.Code, rec.Body)
		}
	}
	if n := len(f.h.large.free); n != 1 {
		t.Fatalf("%d large buffers free after three requests one at a time, want the one reused", n)
	}
	// raw_json is a copy: the buffer it came from has been zeroed and
	// reused since.
	f.pub.mu.Lock()
	defer f.pub.mu.Unlock()
	if len(f.pub.events) != 3 {
		t.Fatalf("published %d, want 3", len(f.pub.events))
	}
	for _, ev := range f.pub.events {
		if !bytes.Equal(ev.GetRawJson(), payload) {
			t.Fatal("a published raw_json shares memory with a reused body buffer")
		}
	}
}
