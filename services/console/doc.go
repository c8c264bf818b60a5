// Package console is the staff web console: one place to see a customer
// across billing, the CRM and the support desk, with sign-in (local
// accounts or OIDC), roles checked on every request and an audit log of
// every sign-in and action. Pages are rendered on the server from
// html/template with embedded assets and no script.
//
// The console owns the Postgres schema "console" (staff, sessions, audit
// log) and writes no other: it reads billing through billing-state's gRPC
// API and acts only through the services' APIs and subjects.
package console
