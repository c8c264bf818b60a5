package cli_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/launchready/launchready/services/launchready/internal/cli"
)

func TestParseTakesFlagsAfterTheArguments(t *testing.T) {
	var stderr bytes.Buffer
	fs := cli.FlagSet("status", "usage: status <customer>\n", &stderr)
	asJSON := fs.Bool("json", false, "")
	rest, _, ok := cli.Parse(fs, []string{"cus_1", "--json", "cus_2", "--", "--not-a-flag"})
	if !ok || !*asJSON || !slices.Equal(rest, []string{"cus_1", "cus_2", "--not-a-flag"}) {
		t.Fatalf("rest %q, json %v, ok %v", rest, *asJSON, ok)
	}
}

func TestParseExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	fs := cli.FlagSet("send", "usage: send <file>...\n", &stderr)
	if _, code, ok := cli.Parse(fs, []string{"-h"}); ok || code != 0 {
		t.Fatalf("-h: code %d ok %v, want 0 and not ok", code, ok)
	}
	if !strings.HasPrefix(stderr.String(), "usage: send") {
		t.Fatalf("-h printed %q, want the usage first", stderr.String())
	}
	if _, code, ok := cli.Parse(fs, []string{"--nope"}); ok || code != 2 {
		t.Fatalf("unknown flag: code %d ok %v, want 2 and not ok", code, ok)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		":9090":          "127.0.0.1:9090",
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:8080":      "127.0.0.1:8080",
		"10.0.0.5:9090":  "10.0.0.5:9090",
		"not an address": "not an address",
	} {
		if got := cli.Dialable(in); got != want {
			t.Errorf("Dialable(%q) = %q, want %q", in, got, want)
		}
	}
}
