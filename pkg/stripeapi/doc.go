// Package stripeapi reads Stripe's API for every part of Launch Ready that
// needs more than webhooks tell it: `launchready backfill` (the events
// list, object lists), billing-state's drift check and its re-reads of one
// subscription or charge. It also makes the changes staff actions ask for
// (a refund, a cancellation, a plan change): each with an Idempotency-Key
// derived from the action id, so a retry or a double submit changes nothing
// twice, and with the action id in the object's metadata
// (ActionMetadataKey), so the webhook the change causes names its action.
//
// It is stripe-go v76 with the limits Stripe sets made explicit:
//
//   - every HTTP request, stripe-go's own retries included, waits for a
//     shared budget of STRIPE_API_RATE requests a second (default 20, under
//     test mode's 25), so no one-second window sees more;
//   - stripe-go retries connection errors, 409s, 5xx and lock-timeout 429s
//     (MaxNetworkRetries). By design it does not retry a rate-limit 429
//     (code rate_limit): this package backs off on those itself, with
//     jitter, holding every caller back, and keeps going for up to
//     Config.RateLimitPatience;
//   - a live key is refused when STRIPE_LIVEMODE says test, and a test key
//     when it says live, before any request is made.
//
// Lists are paged with starting_after and limit=100 and handed to the
// caller page by page as raw JSON, so nothing stripe-go v76 cannot decode
// (fields of newer API versions) is lost.
package stripeapi
