// Command billing-state runs the billing-state service. Configuration is
// the environment; see package billingstate.
package main

import (
	"github.com/launchready/launchready/pkg/service"
	billingstate "github.com/launchready/launchready/services/billing-state"
)

func main() {
	service.Main(billingstate.Durable, billingstate.ConfigFromEnv, billingstate.Run)
}
