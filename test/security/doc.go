// Package security replays, against the real binaries run as separate
// processes (package harness), the attacks that once crashed a service or
// reached data without the right credentials, and asserts that each is
// refused while the system keeps serving.
package security
