// Package security holds process-level tests of Launch Ready's defences.
// Each runs the real service binaries and a real nats-server as separate
// processes (package harness), with a real Postgres, replays an attack or
// a failure an attacker could cause (one that once crashed a service or
// reached data without the right credentials, a credential revoked under a
// running service), and asserts what the system does about it: the attack
// is refused while the system keeps serving, and the failure ends only the
// process it hit.
package security
