package billingstate

import (
	"io/fs"

	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Schema names the Postgres schema billing-state owns and its migrations, for
// tools that check a deployment (launchready doctor).
func Schema() (name string, migrations fs.FS) { return state.Schema, state.Migrations() }
