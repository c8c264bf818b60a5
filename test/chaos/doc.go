// Package chaos delivers a realistic, shuffled, partly duplicated event
// stream to Launch Ready running as separate processes while it kills and
// restarts every consumer, restarts nats-server and cuts the database off,
// then proves that nothing was lost and no side effect happened twice, and
// that every customer ends where an in-order run of the same events ends.
//
// The run is bounded (well under four minutes on a two-core machine) and
// logs its phases with -v. LR_CHAOS_SEED replays a given shuffle;
// LR_E2E_LOGDIR keeps every process's full output.
package chaos
