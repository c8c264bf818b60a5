// Command crm-sync keeps a CRM in step with billing; see package crmsync.
package main

import (
	"github.com/launchready/launchready/pkg/service"
	crmsync "github.com/launchready/launchready/services/crm-sync"
)

func main() {
	service.Main("crm-sync", crmsync.ConfigFromEnv, crmsync.Run)
}
