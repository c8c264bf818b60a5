package results

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSectionsSurviveTheBodyAndEachOther(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := WriteBody(path, "# Report\n\nfirst body\n"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "crm", "## CRM\n\n40 s\n"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "alerts", "## Alerts\n\n2 min\n"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "crm", "## CRM\n\n30 s\n"); err != nil {
		t.Fatal(err)
	}
	if err := WriteBody(path, "# Report\n\nsecond body\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"second body", "## CRM\n\n30 s", "## Alerts\n\n2 min"} {
		if !strings.Contains(got, want) {
			t.Errorf("file lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"first body", "40 s"} {
		if strings.Contains(got, gone) {
			t.Errorf("file still holds %q:\n%s", gone, got)
		}
	}
	if strings.Count(got, "<!-- section:crm -->") != 1 || strings.Index(got, "## CRM") > strings.Index(got, "## Alerts") {
		t.Errorf("sections duplicated or reordered:\n%s", got)
	}
}
