package stripeevent

import "testing"

func TestSmokeRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"object metadata", `{"data":{"object":{"metadata":{"launchready_smoke":"run1"}}}}`, "run1"},
		{"invoice subscription_details", `{"data":{"object":{"subscription_details":{"metadata":{"launchready_smoke":"run2"}}}}}`, "run2"},
		{"basil parent", `{"data":{"object":{"parent":{"subscription_details":{"metadata":{"launchready_smoke":"run3"}}}}}}`, "run3"},
		{"expanded customer", `{"data":{"object":{"customer":{"id":"cus_1","metadata":{"launchready_smoke":"run4"}}}}}`, "run4"},
		{"empty value still marks", `{"data":{"object":{"metadata":{"launchready_smoke":""}}}}`, "true"},
		{"customer id only", `{"data":{"object":{"customer":"cus_1","metadata":{"user_id":"u1"}}}}`, ""},
		{"not json", `nope`, ""},
	} {
		if got := SmokeRun([]byte(tc.raw)); got != tc.want {
			t.Errorf("%s: SmokeRun = %q, want %q", tc.name, got, tc.want)
		}
	}
}
