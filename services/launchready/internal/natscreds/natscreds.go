// Package natscreds is where the operator's commands find their NATS
// credentials, so that none needs a flag on a developer's machine: the
// NATS_* variables when they carry credentials (a deployment), else the
// nkey `launchready dev` keeps for the user in <data>/nats/<user>.nk.
package natscreds

import (
	"os"
	"path/filepath"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
)

// DevURL is the embedded server of `launchready dev` at its default port.
const DevURL = "nats://127.0.0.1:4223"

// Dir is where `launchready dev` keeps every user's nkey under its data
// directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "nats") }

// Conn returns how a command connects as user (natsauth.Admin for `dlq`
// and `provision`): NATS_URL, else DevURL; the credentials in the
// environment when there are any, else the dev nkey of user under dataDir
// when that file exists. Problems are collected in e.
func Conn(e *config.Env, dataDir, user string) bus.ConnConfig {
	c := bus.ConnConfigFromEnv(e, user)
	if e.Lookup("NATS_URL") == "" {
		c.URL = DevURL
	}
	if c.Authenticated() {
		return c
	}
	if seed := natsauth.NKeyFile(Dir(dataDir), c.User); fileExists(seed) {
		c.NKeyFile = seed
	}
	return c
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
