// Package e2e holds the regression suite that runs Launch Ready as
// separate processes: nats-server (v2.15, built from the module), ingress,
// billing-state, crm-sync and support-notify, each against a fresh Postgres
// database and fake HubSpot, Zendesk and Slack servers, driven by signed
// webhooks exactly as Stripe sends them. See package harness for the
// machinery and package scenario for the events.
package e2e
