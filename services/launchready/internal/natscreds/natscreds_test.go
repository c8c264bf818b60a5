package natscreds_test

import (
	"path/filepath"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
)

// On a developer's machine a command finds the key `launchready dev` made,
// without a flag; a deployment's NATS_* credentials win over it.
func TestConnFindsTheDevKeyUnlessTheEnvironmentHasCredentials(t *testing.T) {
	data := t.TempDir()
	if _, err := natsauth.NKeyFiles(natscreds.Dir(data)); err != nil {
		t.Fatal(err)
	}

	e := config.New(config.Map(nil))
	c := natscreds.Conn(e, data, natsauth.Admin)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	if c.URL != natscreds.DevURL || c.User != natsauth.Admin || c.NKeyFile != filepath.Join(data, "nats", "admin.nk") {
		t.Errorf("dev default: %+v", c)
	}
	if c := natscreds.Conn(config.New(config.Map(nil)), data, natsauth.Reader); c.NKeyFile != filepath.Join(data, "nats", "reader.nk") {
		t.Errorf("reader: %+v", c)
	}

	e = config.New(config.Map(map[string]string{"NATS_URL": "nats://nats.example:4222", "NATS_PASSWORD": "from-the-secret"}))
	c = natscreds.Conn(e, data, natsauth.Admin)
	if c.URL != "nats://nats.example:4222" || c.NKeyFile != "" || c.Password.Reveal() != "from-the-secret" || c.User != natsauth.Admin {
		t.Errorf("deployment: %+v", c)
	}

	// No dev directory and no credentials: an anonymous client, which a
	// server with authentication refuses with a clear error.
	if c := natscreds.Conn(config.New(config.Map(nil)), t.TempDir(), natsauth.Admin); c.Authenticated() {
		t.Errorf("credentials out of nowhere: %+v", c)
	}
}
