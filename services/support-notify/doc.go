// Package supportnotify is the support-notify service as a library: it
// consumes billing events from JetStream and turns the ones that need a
// human into Zendesk tickets and Slack alerts, as the rules say
// (SUPPORT_RULES_FILE, or the built-in defaults).
//
// # Two consumers, so neither vendor waits for the other
//
// Tickets and alerts are independent actions with their own progress
// records, run by two durable consumers on the same stream:
//
//   - "support-notify" opens, comments on and resolves tickets. Its
//     progress is support.processed_events, written in the transaction that
//     records the ticket.
//   - "support-notify-alerts" sends alerts. Its progress is
//     support.alerts_sent.
//
// Each has its own workers (CONSUMER_CONCURRENCY), its own redelivery
// backoff and its own dead letters (billing.dlq.support-notify,
// billing.dlq.support-notify-alerts). A slow or failing Zendesk holds only
// ticket workers, and a 10-second Zendesk call never delays an alert;
// a Slack outage never re-opens a ticket. One consumer recording
// per-action completion would give the same exactly-once effects, but its
// bounded workers would be shared: enough slow Zendesk calls in flight
// would occupy every worker and stall alerts behind them, which is exactly
// what the 2-minute alert promise cannot afford. Replays stay per action
// too: billing.replay.support-notify.> re-runs tickets only.
//
// # Exactly once, and the one accepted duplicate
//
// Tickets: the Zendesk call runs inside the transaction that records the
// ticket, under an advisory lock on the Stripe object. A crash after
// Zendesk opened the ticket but before the commit leaves no ticket record,
// only the intent committed before the call (the exact request and its
// Idempotency-Key, stable per event and action). The next event about the
// object, the redelivery or a different one, replays that intent first and
// Zendesk answers with the ticket it already opened. Comments
// on an existing ticket (a later failure, "resolved") carry a key as well,
// but Zendesk documents idempotency for ticket creation only, so the same
// crash during a comment may add that comment twice.
//
// Alerts: deduplicated by event id in support.alerts_sent, checked before
// sending and recorded after Slack answers 2xx, under an advisory lock on
// the event id so concurrent deliveries of one event send once. Slack incoming webhooks
// have no idempotency key, so a crash (or a database outage outlasting the
// record's retries) after Slack accepted and before the record commits
// sends that alert once more on redelivery. This duplicate is an accepted
// risk: recording first would turn the same crash into a lost alert.
//
// # Digests
//
// The alert channel sends one message at a time, at most one per
// ALERT_DIGEST_WINDOW. Alerts that arrive while it waits (for the window,
// or for a 429's Retry-After) leave together as one digest: counts by type
// and reason, the total amount, the top customers with links and every
// event id. Each event is still locked, deduplicated and recorded on its
// own, so a redelivered event a digest carried sends nothing.
//
// # Alert latency
//
// lr_alert_latency_seconds measures from the Stripe event's created time
// to Slack's 2xx. An alert already older than ALERT_SLO when it leaves is
// still sent, marked late in the message; every alert accepted after the
// SLO counts in lr_alerts_late_total.
package supportnotify
