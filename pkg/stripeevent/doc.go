// Package stripeevent turns a Stripe webhook delivery into a trusted
// launchready.billing.v1.BillingEvent.
//
// It does the two things ingress needs on its hot path and nothing more:
//
//   - Verify checks the Stripe-Signature header against every configured
//     signing secret (so secrets can be rotated), with an injected clock and
//     a tolerance that applies to stale and to future timestamps alike.
//   - Normalize decodes the verified body into a BillingEvent without
//     building a generic map, reading each field from wherever the event's API
//     version puts it (from 2017-era shapes through 2025-03-31.basil and
//     later), and keeps the exact bytes in raw_json so every consumer can
//     re-derive anything the normalised fields leave out.
//
// Sign produces a valid header for tests, load generators and
// `launchready send`.
//
// user_id is the app's own user id: metadata.user_id on the object; for
// invoices, the subscription metadata Stripe copies onto the invoice; for
// checkout sessions, client_reference_id when metadata has none, because that
// is the field Checkout offers for exactly this; lastly an expanded
// customer's metadata.user_id.
//
// smoke_run is SmokeRun of the body: set once here so that no consumer has
// to parse raw_json again to tell a smoke test from a real customer.
//
// Normalize dispatches on data.object.object rather than on the event type:
// charge.dispute.* events carry a dispute and charge.refund.updated a refund,
// and Stripe adds event types more often than object types. Events of types
// it does not know still get the envelope, the object type and id, and the
// customer when the object names one (each only when it has the shape of a
// Stripe id).
//
// CheckPlausible holds a normalised event to what Stripe sends: a type of
// dot-separated lowercase words and Stripe-shaped ids. ParseSignature checks
// the header's shape without the body, so a caller can refuse a request
// before reading it.
package stripeevent
