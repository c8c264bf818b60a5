// Command console runs the staff web console. Configuration is the
// environment; see package console.
package main

import (
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/services/console"
)

func main() {
	service.Main(console.ServiceName, console.ConfigFromEnv, console.Run)
}
