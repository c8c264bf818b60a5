// Package cluster runs Launch Ready as a scaled-out production would, as
// separate processes: three clustered nats-server v2.15 nodes with the
// streams at R3, two processes of every service and one Postgres database.
// It sends webhooks over both ingresses at a steady rate while it kills
// the stream leader's node and one replica of each consumer, and checks
// that nothing is lost, nothing happens twice, no webhook is refused and
// every customer ends as a single-node in-order run says.
//
// `make test` runs the short form (one leader kill, one consumer kill,
// about two minutes); `make bench` runs the full one (LR_CLUSTER_FULL=1:
// also a node paused for 10 s and everything restarted) and writes its
// figures to test/load/RESULTS.md (LR_CLUSTER_RESULTS).
package cluster
