package supportnotify

import (
	"io/fs"

	"github.com/launchready/launchready/services/support-notify/internal/store"
)

// Schema names the Postgres schema support-notify owns and its migrations, for
// tools that check a deployment (launchready doctor).
func Schema() (name string, migrations fs.FS) { return store.Schema, store.Migrations() }
