// Package crmwebhook signs and verifies the documents crm-sync posts to a
// generic CRM endpoint (CRM_PROVIDER=webhook): Zapier, Make, n8n or a
// home-grown CRM.
//
// # Request
//
// Each change is one HTTP POST to CRM_WEBHOOK_URL with a JSON body
// (Content-Type: application/json) and these headers:
//
//	Launchready-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//	Idempotency-Key:       <key>
//	Launchready-Event-Id:  <Stripe event id that caused the change>
//
// # Signature
//
// The signed payload is the decimal Unix timestamp from t, a full stop, and
// the raw request body, byte for byte:
//
//	signed_payload = t + "." + body
//	v1 = lower-case hex( HMAC-SHA256(key = CRM_WEBHOOK_SECRET, message = signed_payload) )
//
// The secret is used as-is (its UTF-8 bytes). To verify, a receiver:
//
//  1. splits the header on "," and each item on the first "=", taking t and
//     every v1 (more than one v1 may appear while a secret is rotated; any
//     match is enough; unknown keys are ignored);
//  2. recomputes v1 over t + "." + the body exactly as received (before any
//     JSON parsing) and compares in constant time (hmac.Equal);
//  3. rejects a t further than its tolerance (five minutes is usual) from
//     its own clock, in either direction, to refuse replays.
//
// This is the scheme Stripe uses for its own webhooks, under a different
// header name. Verify implements it for Go receivers.
//
// # Idempotency-Key
//
// The key names one change: it is derived from the Stripe event id, the
// object the change is about (customer or subscription) and the content of
// the document, so a retry of the same change (after a timeout, a 5xx, or a
// crash of crm-sync before it recorded the delivery) carries the same key,
// and a receiver that stores keys it has applied can drop the repeat. A
// later event produces a new key. The timestamp is not part of the key: a
// retry is signed anew, with a fresh t.
//
// # Answers
//
// Any 2xx means applied. 429 with Retry-After defers the retry by that
// long; 5xx, timeouts and refused connections are retried with exponential
// backoff; any other 4xx dead-letters the change with the response body as
// its reason (`launchready dlq list`, then `launchready dlq replay` once the
// receiver is fixed).
package crmwebhook
