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

// Normalize sets smoke_run from the same reading as SmokeRun, for a marked
// invoice of either API version and for an unmarked one.
func TestNormalizeSetsSmokeRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, object, want string
	}{
		{"invoice metadata", `{"id":"in_1","object":"invoice","customer":"cus_1","metadata":{"launchready_smoke":"r1"}}`, "r1"},
		{"basil parent", `{"id":"in_1","object":"invoice","customer":"cus_1",
			"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_1","metadata":{"launchready_smoke":"r2"}}}}`, "r2"},
		{"real customer", `{"id":"in_1","object":"invoice","customer":"cus_1","metadata":{"user_id":"u1"}}`, ""},
		{"key only in a value", `{"id":"in_1","object":"invoice","customer":"cus_1","description":"launchready_smoke"}`, ""},
	} {
		raw := `{"id":"evt_1","type":"invoice.payment_failed","created":1700000000,"data":{"object":` + tc.object + `}}`
		ev, err := Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("%s: Normalize: %v", tc.name, err)
		}
		if ev.GetSmokeRun() != tc.want {
			t.Errorf("%s: smoke_run = %q, want %q", tc.name, ev.GetSmokeRun(), tc.want)
		}
	}
}
