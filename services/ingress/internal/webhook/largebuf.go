package webhook

// largeBuffers hands out the buffers of bodies in the long class (above
// ShortBody, or of unknown length), at most one per slot of that class.
//
// Each buffer holds MaxBody+1 bytes and lives outside the Go heap where the
// platform allows (mapAnonymous), for two reasons. Ingress runs with
// GOGC=400 (cmd/ingress): the collector lets the heap grow to five times
// what is live, so 8 MiB of half-received uploads on the heap would let it
// grow by some 40 MiB. Off the heap they count once, as what they are. And
// a buffer is reused rather than left as garbage: a flood cut off at the
// read timeout, over and over, allocates nothing. When a body is done, its
// pages go back to the kernel (releasePages), so memory returns to where it
// was before the flood.
type largeBuffers struct {
	size int
	free chan largeBuffer
}

// largeBuffer is one buffer; mapped says it is off the heap.
type largeBuffer struct {
	b      []byte
	mapped bool
}

func newLargeBuffers(slots int, maxBody int64) *largeBuffers {
	return &largeBuffers{size: int(maxBody) + 1, free: make(chan largeBuffer, slots)}
}

// get returns a buffer of capacity MaxBody+1.
func (l *largeBuffers) get() largeBuffer {
	select {
	case lb := <-l.free:
		return lb
	default:
	}
	if b, err := mapAnonymous(l.size); err == nil {
		return largeBuffer{b: b[:0], mapped: true}
	}
	// No mapping to be had: the heap still works, it is only counted
	// differently.
	return largeBuffer{b: make([]byte, 0, l.size)}
}

// put takes back a buffer from get once nothing refers to it any more;
// used is how many of its first bytes were written.
func (l *largeBuffers) put(lb largeBuffer, used int) {
	if lb.mapped {
		releasePages(lb.b[:cap(lb.b)], used)
	}
	lb.b = lb.b[:0]
	select {
	case l.free <- lb:
	default:
		// More buffers than slots cannot happen while admission holds. A
		// mapped one too many stays mapped: a leak of one buffer beats a
		// fault on unmapped memory.
	}
}
