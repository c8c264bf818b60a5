package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// NKeyFile is where NKeyFiles keeps user's seed inside its directory.
func NKeyFile(dir, user string) string { return filepath.Join(dir, user+".nk") }

// NKeyFiles gives every user of the model an nkey of its own, kept in dir:
// a seed file per user (NKeyFile, mode 0600; NATS_NKEY points a client at
// it), made on first use and reused after, so clients keep working across
// restarts. It returns the logins the server needs: the public keys only.
// A seed that cannot be read is an error, never silently replaced.
func NKeyFiles(dir string) ([]Login, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nkeys: %w", err)
	}
	var logins []Login
	for _, name := range Names() {
		pub, err := LoadOrCreateNKey(NKeyFile(dir, name))
		if err != nil {
			return nil, fmt.Errorf("nkeys: %s: %w", name, err)
		}
		logins = append(logins, Login{User: name, NKey: pub})
	}
	return logins, nil
}

// LoadOrCreateNKey returns the public key of the user seed at path, making
// a new seed there (mode 0600) when there is none.
func LoadOrCreateNKey(path string) (string, error) {
	seed, err := os.ReadFile(path) // #nosec G304 -- the operator's own seed file, named in configuration
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", err
		}
		if seed, err = kp.Seed(); err != nil {
			return "", err
		}
		// Written aside, then linked into place: a second process starting
		// on the same directory either wins the link or reads this key,
		// never a half-written file.
		tmp, err := os.CreateTemp(filepath.Dir(path), ".nkey-*")
		if err != nil {
			return "", err
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(append(seed, '\n')); err != nil {
			_ = tmp.Close()
			return "", err
		}
		if err := tmp.Close(); err != nil {
			return "", err
		}
		if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
			return LoadOrCreateNKey(path)
		} else if err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("%s does not hold a user seed", path)
	}
	return pub, nil
}
