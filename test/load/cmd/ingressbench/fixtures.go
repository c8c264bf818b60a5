package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/launchready/launchready/pkg/stripeevent"
)

// payload is one fixture envelope split around the value of its top-level
// "id", so a request gets a fresh event id by concatenation and every other
// byte stays as Stripe wrote it.
type payload struct {
	name   string
	prefix []byte // up to and including the opening quote of the id
	suffix []byte // from the closing quote on
}

func (p payload) size() int { return len(p.prefix) + len(p.suffix) }

// render appends the payload with id to dst.
func (p payload) render(dst []byte, id []byte) []byte {
	dst = append(dst, p.prefix...)
	dst = append(dst, id...)
	return append(dst, p.suffix...)
}

// loadPayloads reads every event envelope under dir that ingress would
// accept. objects/ and data-only/ hold bare objects, not envelopes.
func loadPayloads(dir string) ([]payload, error) {
	var out []payload
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "objects" || n == "data-only" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".json") {
			return nil
		}
		raw, err := os.ReadFile(path) // #nosec G122 G304 -- reads the repository's own fixture tree
		if err != nil {
			return err
		}
		if _, err := stripeevent.Normalize(raw); err != nil {
			return nil // not an envelope ingress accepts; not load material
		}
		start, end, err := topLevelID(raw)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, payload{
			name:   rel,
			prefix: append([]byte(nil), raw[:start]...),
			suffix: append([]byte(nil), raw[end:]...),
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load fixtures from %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load fixtures from %s: no event envelopes found", dir)
	}
	return out, nil
}

// topLevelID returns the byte range of the characters inside the quotes of
// the envelope's "id" value (not data.object.id).
func topLevelID(raw []byte) (start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, errors.New("not a JSON object")
	}
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return 0, 0, err
		}
		key, _ := keyTok.(string)
		if key != "id" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return 0, 0, err
			}
			continue
		}
		val, err := dec.Token()
		if err != nil {
			return 0, 0, err
		}
		id, ok := val.(string)
		if !ok {
			return 0, 0, errors.New("id is not a string")
		}
		end := int(dec.InputOffset()) - 1 // closing quote
		if end < 0 || raw[end] != '"' || !bytes.HasSuffix(raw[:end], []byte(id)) {
			return 0, 0, errors.New("id is escaped; cannot splice")
		}
		return end - len(id), end, nil
	}
	return 0, 0, errors.New("no top-level id")
}
