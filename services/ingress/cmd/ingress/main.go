// Command ingress receives Stripe webhooks and publishes them to JetStream.
// Configuration is the environment; see package ingress.
package main

import (
	"os"
	"runtime/debug"

	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/services/ingress"
)

// gcPercent applies unless GOGC is set. Ingress keeps almost nothing alive
// between requests (a few MiB), so at the default of 100 the collector runs
// dozens of times a second under load, for no memory it could give back.
// 400 costs about 10 MiB of RSS and saves a fifth of the CPU per event
// (measured with test/load/cmd/ingressbench).
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	service.Main(ingress.ServiceName, ingress.ConfigFromEnv, ingress.Run)
}
