package billingv1

import (
	"strings"
	"testing"
)

func TestValidActionID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"act_0123456789abcdefABCDEF", true},
		{"a", true},
		{"with-dash_and_underscore", true},
		{strings.Repeat("x", MaxActionIDBytes), true},
		{"", false},
		{strings.Repeat("x", MaxActionIDBytes+1), false},
		{"act 1", false},
		{"act/1", false},
		{"act_é", false},
		{"act\n1", false},
	} {
		if got := ValidActionID(tc.id); got != tc.want {
			t.Errorf("ValidActionID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
