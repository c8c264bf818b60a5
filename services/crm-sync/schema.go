package crmsync

import (
	"io/fs"

	"github.com/launchready/launchready/services/crm-sync/internal/store"
)

// Schema names the Postgres schema crm-sync owns and its migrations, for
// tools that check a deployment (launchready doctor).
func Schema() (name string, migrations fs.FS) { return store.Schema, store.Migrations() }
