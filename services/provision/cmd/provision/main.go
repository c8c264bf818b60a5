// Command provision creates or updates the JetStream streams as the NATS
// admin user, then exits: the Kubernetes Job and the compose one-off that
// run before the services. Configuration is the environment; see package
// provision.
package main

import (
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/services/provision"
)

func main() {
	service.Main(provision.Name, provision.ConfigFromEnv, provision.Run)
}
