package display

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestBuiltInCataloguesAreComplete(t *testing.T) {
	cs, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cs.Locales(), ","); got != "de,en" {
		t.Fatalf("locales %s", got)
	}
	for _, tag := range []string{"en", "de", "de_DE", "DE-at", "fr", ""} {
		want := "en"
		if strings.HasPrefix(strings.ToLower(tag), "de") {
			want = "de"
		}
		if got := cs.For(tag).Locale; got != want {
			t.Errorf("For(%q) = %s, want %s", tag, got, want)
		}
	}
}

// A deployment overrides words and adds a locale with files, without a
// rebuild; missing words fall back to English, overrides included.
func TestLocalesDirOverridesAndAdds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("en.json", `{"cases": {"active": {"headline": "All good"}}, "actions": {"manage_plan": "Your plan"}}`)
	write("fr.json", `{"format": {"date": "{day} {month} {year}", "months": ["janvier","février","mars","avril","mai","juin","juillet","août","septembre","octobre","novembre","décembre"], "decimal": ",", "group": " ", "money": "{amount} {symbol}"},
		"cases": {"active": {"headline": "Votre abonnement est actif", "detail": "Il se renouvelle le {date}."}}}`)
	cs, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &billingv1.CustomerStatus{Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, SubscriptionId: "sub_1",
		CurrentPeriodEnd: tsAt(time.Date(2026, 8, 9, 0, 0, 0, 0, time.UTC))}
	en := Derive(cs.For("en"), st, Facts{}, time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC))
	if en.Headline != "All good" || en.Detail != "It renews on August 9, 2026." || en.ActionLabel != "Your plan" {
		t.Errorf("en override: %v", en)
	}
	fr := Derive(cs.For("fr-CA"), st, Facts{}, time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC))
	if fr.Locale != "fr" || fr.Headline != "Votre abonnement est actif" || fr.Detail != "Il se renouvelle le 9 août 2026." || fr.ActionLabel != "Your plan" {
		t.Errorf("fr: %v", fr)
	}
	if got := cs.For("fr").Money(123456789, "eur"); got != "1 234 567,89 €" {
		t.Errorf("fr money %q", got)
	}
}

func TestLocalesDirRefusesMistakes(t *testing.T) {
	for name, body := range map[string]string{
		"unknown case":     `{"cases": {"actve": {"headline": "x"}}}`,
		"placeholder typo": `{"cases": {"active": {"detail": "Renews {dat}"}}}`,
		"unknown action":   `{"actions": {"cancel": "x"}}`,
		"eleven months":    `{"format": {"months": ["a","b","c","d","e","f","g","h","i","j","k"]}}`,
		"not json":         `{"cases": `,
		"unknown field":    `{"case": {}}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "nl.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "nl") {
			t.Errorf("%s: %v, want an error naming the locale", name, err)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory loaded")
	}
}

func TestMoney(t *testing.T) {
	cs, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	en, de := cs.For("en"), cs.For("de")
	for _, c := range []struct {
		minor       int64
		cur, en, de string
	}{
		{2000, "usd", "$20.00", "20,00 $"},
		{123456, "eur", "€1,234.56", "1.234,56 €"},
		{5, "gbp", "£0.05", "0,05 £"},
		{1500, "jpy", "¥1,500", "1.500 ¥"},
		{990, "mxn", "MXN9.90", "9,90 MXN"},
		{100, "", "", ""},
	} {
		if got := en.Money(c.minor, c.cur); got != c.en {
			t.Errorf("en %d %s = %q, want %q", c.minor, c.cur, got, c.en)
		}
		if got := de.Money(c.minor, c.cur); got != c.de {
			t.Errorf("de %d %s = %q, want %q", c.minor, c.cur, got, c.de)
		}
	}
}

func tsAt(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
