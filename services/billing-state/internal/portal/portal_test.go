package portal

import (
	"strings"
	"testing"
)

func TestReturnURLs(t *testing.T) {
	r, err := ParseReturnURLs(" https://App.example.com/billing/ , myapp://billing/done,http://127.0.0.1:3000/return ")
	if err != nil || r.Len() != 3 {
		t.Fatalf("%v %d", err, r.Len())
	}
	for raw, want := range map[string]bool{
		"https://app.example.com/billing/":                                    true,
		"https://app.example.com/billing/settings?tab=plan":                   true,
		"https://APP.example.com/billing/x":                                   true,
		"https://app.example.com/billing":                                     false, // the entry is the folder
		"https://app.example.com/other":                                       false,
		"https://app.example.com/billing/../admin":                            false,
		"https://app.example.com/billing/%2e%2e/admin":                        false,
		"https://app.example.com/billing/%2F%2Fevil.com":                      false,
		"https://app.example.com.evil.com/billing/":                           false,
		"https://evil.com/billing/":                                           false,
		"http://app.example.com/billing/":                                     false,
		"https://user@app.example.com/billing/":                               false,
		"https://app.example.com/billing/#x":                                  false,
		"https://app.example.com:8443/billing/":                               false,
		"myapp://billing/done":                                                true,
		"myapp://billing/done/more":                                           false,
		"otherapp://billing/done":                                             false,
		"http://127.0.0.1:3000/return":                                        true,
		"http://127.0.0.1:3001/return":                                        false,
		"":                                                                    false,
		"https://app.example.com/billing/" + strings.Repeat("a", MaxURLBytes): false,
		"javascript:alert(1)":                                                 false,
	} {
		if got := r.Allows(raw); got != want {
			t.Errorf("Allows(%q) = %v, want %v", raw, got, want)
		}
	}
	var none ReturnURLs
	if none.Allows("https://app.example.com/billing/") {
		t.Error("an empty list allowed a URL")
	}
}

func TestParseReturnURLsRefuses(t *testing.T) {
	for _, bad := range []string{
		"http://app.example.com/", "https://app.example.com/?a=1", "https://u@app.example.com/",
		"app.example.com/billing", "https://app.example.com/#top", "javascript://x/",
	} {
		if _, err := ParseReturnURLs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
