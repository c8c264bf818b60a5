// Command support-notify turns billing events into Zendesk tickets and
// Slack alerts. Configuration is the environment; see package supportnotify.
package main

import (
	"github.com/launchready/launchready/pkg/service"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

func main() {
	service.Main(supportnotify.ServiceName, supportnotify.ConfigFromEnv, supportnotify.Run)
}
