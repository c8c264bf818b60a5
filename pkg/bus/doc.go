// Package bus is the only path between services: JetStream streams, an
// event publisher that waits for the PubAck, and a consumer runner that turns
// a handler's answer into ack, delayed redelivery or a dead letter, with the
// trace context carried across every hop.
//
// Delivery is at least once. Handlers make their effects exactly once by
// recording the event id in the same transaction as the change; the runner
// keeps a message alive while its handler works, up to a per-call timeout,
// backs off between attempts, and never drops a message without a dead
// letter.
//
// A subject built from input is checked before it reaches NATS, whose
// answer to an oversized one is to close the connection: the publisher, the
// consumer and the dead-letter tools check theirs, and code that subscribes
// with caller input checks it with ValidSubjectToken or a Checked* subject
// builder.
package bus
