// Package testkit is the one home of what tests across the modules share:
// where the Stripe fixtures are, how to wait for a condition, and (in its
// subpackages) the Stripe journey builder, the stripe-mock runner and one
// fake per vendor with fault injection. Production code never imports it.
package testkit
