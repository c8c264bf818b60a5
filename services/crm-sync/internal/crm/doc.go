// Package crm holds the CRM adapters crm-sync can push to (HubSpot, a
// signed generic webhook, and a log-only adapter for development) and
// crm-sync's configuration of the shared vendor client (pkg/vendorhttp)
// they all call through: one rate budget for the process, a pause for
// every worker after a 429, retries in place with backoff, no redirects,
// the lr_crm_* metrics, and the mapping from HTTP answers to the bus's
// retry decisions.
//
// An adapter receives the whole state the CRM should show for one customer
// and the subscriptions that changed, never a diff of Stripe fields, so a
// repeated or reordered push converges on the same CRM records. Every write
// is keyed by something the CRM itself keeps unique (a contact's email or
// stripe_customer_id, a deal's stripe_subscription_id, an Idempotency-Key),
// which is what makes a retry after a crash harmless.
package crm
