// Package vendorhttp is the one HTTP client for calls to third-party
// vendors (HubSpot, a CRM webhook, Zendesk, Slack). Every service that
// calls a vendor builds a Client with its own policy and gets the same
// behaviour:
//
//   - every attempt ends within Config.Timeout, dialing and TLS included;
//   - a redirect is refused: the answer is an error naming its status, and
//     the request (a signed body, a bearer token) is never sent again;
//   - Retry-After is read in one place (ParseRetryAfter), in seconds or as
//     an HTTP date, and bounded by the service's RetryAfterPolicy;
//   - an optional shared rate budget (Limiter) that also sits out a
//     vendor's Retry-After pause for every worker of the process;
//   - optional retries in the call itself, with exponential backoff and
//     jitter (Backoff), for answers and failures worth retrying, as long
//     as the wait fits Config.MaxWait and the context;
//   - one client span per attempt (named "<vendor> <METHOD>"; with
//     HideURLPath the span never sees the path, which for a webhook is the
//     credential), and one Call per attempt for the service's metrics;
//   - error texts and kept response bodies pass through pkg/redact, with
//     the service's own secrets removed by value.
//
// Classify maps an answer onto the bus's retry vocabulary: nil for 2xx,
// bus.RetryAfter for 429, a plain error (backoff) for 5xx and the
// service's transient statuses, bus.Permanent (dead letter) for the rest.
package vendorhttp
