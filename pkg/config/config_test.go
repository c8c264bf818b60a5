package config_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/redact"
)

func TestEnvReadsTypesAndCollectsEveryError(t *testing.T) {
	e := config.New(config.Map(map[string]string{
		"N": " 42 ", "D": "250ms", "B": "false", "L": "a, b,,c ", "BADN": "x", "BADD": "soon", "MODE": "live", "BADMODE": "prod",
	}))
	if got := e.Int("N", 1); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := e.Duration("D", time.Second); got != 250*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if got := e.Bool("B", true); got {
		t.Errorf("Bool = %v", got)
	}
	if got := strings.Join(e.List("L"), "|"); got != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if got := e.String("UNSET", "def"); got != "def" {
		t.Errorf("String default = %q", got)
	}
	if got := e.OneOf("MODE", "", "", "live", "test"); got != "live" {
		t.Errorf("OneOf = %q", got)
	}
	if e.Err() != nil {
		t.Fatalf("unexpected error: %v", e.Err())
	}
	e.Int("BADN", 1)
	e.Duration("BADD", time.Second)
	e.OneOf("BADMODE", "", "", "live", "test")
	e.Require("MISSING")
	err := e.Err()
	for _, want := range []string{"BADN", "BADD", "BADMODE", "MISSING is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	raw := "whsec_" + strings.Repeat("k", 32) + "tail"
	s := config.Secret(raw)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s", s, s), buf.String()} {
		if strings.Contains(out, strings.Repeat("k", 8)) {
			t.Fatalf("secret leaked: %s", out)
		}
		if !strings.Contains(out, "whsec_****tail") {
			t.Fatalf("masked form missing: %s", out)
		}
	}
	if s.Reveal() != raw {
		t.Fatal("Reveal must return the value")
	}
	if got := config.Mask("short"); got != "****" {
		t.Errorf("Mask(short) = %q", got)
	}
	if got := config.MaskURL("postgres://u:pw@h:5432/db"); got != "postgres://u:"+redact.Placeholder+"@h:5432/db" {
		t.Errorf("MaskURL = %q", got)
	}
	if got := config.MaskURL("postgres://h/db"); got != "postgres://h/db" {
		t.Errorf("MaskURL without password = %q", got)
	}
}
