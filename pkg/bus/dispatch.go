package bus

import (
	"hash/fnv"

	"github.com/nats-io/nats.go/jetstream"
)

// dispatcher queues fetched messages for the workers: into the one shared
// queue, or, partitioned, into the queue of the worker that owns the
// message's key (ConsumerOptions.PartitionKey).
type dispatcher struct {
	queues []chan jetstream.Msg
	// partitionKey is nil when there is one queue.
	partitionKey func(data []byte) string
	// nextQueue spreads messages without a key over the queues.
	nextQueue int
}

func newDispatcher(queues []chan jetstream.Msg, partitionKey func([]byte) string) *dispatcher {
	return &dispatcher{queues: queues, partitionKey: partitionKey}
}

// enqueue never blocks: each queue holds as many messages as there are
// slots, and the caller holds a slot for msg.
func (dp *dispatcher) enqueue(msg jetstream.Msg) {
	if len(dp.queues) == 1 {
		dp.queues[0] <- msg
		return
	}
	var q int
	if key := dp.partitionKey(msg.Data()); key != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(key))
		q = int(h.Sum32() % uint32(len(dp.queues))) // #nosec G115 -- len(dp.queues) is CONSUMER_CONCURRENCY, validated to 1..maxConcurrency
	} else {
		q = dp.nextQueue
		dp.nextQueue = (dp.nextQueue + 1) % len(dp.queues)
	}
	dp.queues[q] <- msg
}
