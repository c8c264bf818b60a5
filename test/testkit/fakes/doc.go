// Package fakes serves one stand-in per third-party API Launch Ready calls
// (HubSpot, Zendesk, Slack) over real HTTP on 127.0.0.1, for every test
// from a package's own to the process-level suites and the load benchmark.
// Each implements the vendor semantics the services rely on (HubSpot's
// unique properties, Zendesk's Idempotency-Key and closed tickets, Slack's
// secret webhook path), reports every call it received with its body and
// arrival time, and misbehaves on demand: latency (SetLatency), standing
// failure rules (AddRule), planned failures of the next calls (FailNext,
// RateLimitNext), hangs (Hang, StopHanging) and answers lost after the
// vendor acted (LoseNextAnswers).
//
// HubSpot and Zendesk are the in-memory vendors of testkit/hubspotfake and
// testkit/zendeskfake behind these faults.
package fakes
