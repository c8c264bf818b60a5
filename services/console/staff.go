package console

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// NewStaff is a local account to add.
type NewStaff struct {
	Email string
	Role  string
	// Password, when set, is the account's password. When empty a
	// one-time password is made, returned by AddStaff, and must be changed
	// at the first sign-in.
	Password string
	// Actor is who adds it, for the audit log ("cli:<os user>" from
	// `launchready staff add`).
	Actor string
}

// AddStaff creates a local staff account in the console's schema at
// databaseURL (migrating it first, so it works before the console has
// ever run) and returns the one-time password it made, if any.
func AddStaff(ctx context.Context, databaseURL string, n NewStaff) (oneTime string, err error) {
	email := strings.TrimSpace(n.Email)
	if email == "" || !strings.Contains(email, "@") || len(email) > 320 {
		return "", fmt.Errorf("--email: %q is not an email address", n.Email)
	}
	role, err := auth.ParseRole(n.Role)
	if err != nil {
		return "", fmt.Errorf("--role: %w", err)
	}
	password, mustChange := n.Password, false
	if password == "" {
		if password, err = auth.OneTimePassword(); err != nil {
			return "", err
		}
		oneTime, mustChange = password, true
	} else if err := auth.CheckPasswordRules(password); err != nil {
		return "", err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return "", err
	}
	pool, err := pg.Open(ctx, databaseURL, pg.WithMaxConns(2), pg.WithApplicationName("launchready staff"))
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		return "", err
	}
	err = pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		st, err := store.CreateStaff(ctx, tx, email, string(role), store.SourceLocal, hash, mustChange)
		if err != nil {
			return err
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: n.Actor, Action: "staff_add", Outcome: "ok", Target: st.Email,
			After: after(map[string]any{"email": st.Email, "role": st.Role, "one_time_password": mustChange})})
	})
	if err != nil {
		return "", fmt.Errorf("add %s: %w", email, err)
	}
	return oneTime, nil
}

func after(v map[string]any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
