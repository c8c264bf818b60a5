// Package redact is the one place that removes secrets from text before it
// leaves the process: error messages, vendor answers kept as a reason, dead
// letters, span attributes, and the URLs and DSNs a service logs at start.
//
// Everything it removes is replaced by one placeholder, Placeholder, so an
// operator reading a log, a dead letter or a trace learns one word for
// "something was here and was removed".
//
// Text scrubs free text by the shape of what it finds (Stripe keys,
// bearer and basic credentials, user info in URLs, credential-named
// parameters, HubSpot tokens, Slack webhook paths) and by the exact
// values a caller knows to be secret. ConnString masks a connection
// string of any form (a URL, a comma list of URLs, a key/value DSN).
// RequestURL and Origin shorten an outbound request URL for spans and
// logs, where the path itself may be the credential.
package redact
