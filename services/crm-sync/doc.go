// Package crmsync is the crm-sync service as a library: a durable JetStream
// consumer ("crm-sync") that keeps a CRM in step with billing.
//
// Each billing event is folded into a small mirror of the customer's
// subscriptions and purchases in the Postgres schema crm; the customer's
// status is then derived with pkg/canonical, the same functions
// billing-state serves gRPC from, so the CRM can never disagree with it.
// What changed is pushed through one adapter, chosen by CRM_PROVIDER:
// HubSpot's CRM API, a signed JSON webhook (see package crmwebhook for the
// scheme, and crmwebhook.Verify for Go receivers), or the log. README.md documents the HubSpot
// calls, the deal stage mapping, and why a crash never duplicates a record.
//
// The consumer is separate from billing-state's and its concurrency is
// bounded, so a slow or failing CRM delays only the CRM: its messages wait
// in JetStream, with Retry-After honoured through NakWithDelay.
package crmsync
