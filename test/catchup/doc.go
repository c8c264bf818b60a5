// Package catchup runs `launchready backfill`, the built command, against
// Launch Ready running as separate processes (nats-server, ingress,
// billing-state, crm-sync, support-notify, fake HubSpot, Zendesk and
// Slack) and a fake Stripe API (test/testkit/stripefake): after an outage
// in which no webhook arrived, catching up from the API must leave every
// customer's status, CRM records and tickets exactly as the webhooks would
// have, and a run killed halfway must finish on its next start without
// applying anything twice.
package catchup
