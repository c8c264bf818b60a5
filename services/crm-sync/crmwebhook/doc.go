// Package crmwebhook signs and verifies the documents crm-sync posts to a
// generic CRM endpoint (CRM_PROVIDER=webhook): Zapier, Make, n8n or a
// home-grown CRM.
//
// # Request
//
// Changes are sent as HTTP POSTs to CRM_WEBHOOK_URL, each with a JSON body
// {"documents": [...]} holding up to MaxDocuments documents (one per
// customer or subscription that changed, each with its own
// "idempotency_key"), Content-Type: application/json and these headers:
//
//	Launchready-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
//	Idempotency-Key:       <key of the POST, see BatchKey>
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
// # Idempotency keys
//
// A document's idempotency_key names one change: it is derived from the
// Stripe event id, the object the change is about (customer or
// subscription) and the content of the document (IdempotencyKey), so a
// retry of the same change (after a timeout, a 5xx, or a crash of crm-sync
// before it recorded the delivery) carries the same key, and a receiver
// that stores keys it has applied can drop the repeat. A later event
// produces a new key. The Idempotency-Key header is derived from the
// documents' keys (BatchKey); since a retry may carry a different set of
// documents, receivers dedupe on the documents' keys. The timestamp is not
// part of any key: a retry is signed anew, with a fresh t.
//
// # Answers
//
// Any 2xx means every document applied. 429 with Retry-After defers the
// retry by that long; 5xx, timeouts and refused connections are retried
// with exponential backoff; any other 4xx says a document cannot be taken:
// the POST is halved and each half sent again until the document stands
// alone, and its change is dead-lettered with the response body as its
// reason (`launchready dlq list`, then `launchready dlq replay` once the
// receiver is fixed), while the others are applied.
package crmwebhook
