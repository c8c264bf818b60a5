package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestEventTypeFromSubject(t *testing.T) {
	for subject, want := range map[string]struct {
		typ    string
		replay bool
	}{
		"billing.events.invoice.payment_failed":                 {"invoice.payment_failed", false},
		"billing.replay.crm-sync.customer.subscription.updated": {"customer.subscription.updated", true},
		"billing.dlq.crm-sync":                                  {"", false},
	} {
		typ, replay := eventTypeFromSubject(subject)
		if typ != want.typ || replay != want.replay {
			t.Errorf("%s -> %q %v, want %q %v", subject, typ, replay, want.typ, want.replay)
		}
	}
}

func TestValidSubjectTokenRefusesWhatCannotBeOneToken(t *testing.T) {
	for _, ok := range []string{"cus_Q1w2E3", "billing-state", "in_1", "é", strings.Repeat("a", MaxSubjectTokenBytes)} {
		if err := ValidSubjectToken(ok); err != nil {
			t.Errorf("%.40q refused: %v", ok, err)
		}
	}
	for name, bad := range map[string]string{
		"empty":              "",
		"dot":                "cus.1",
		"star":               "*",
		"star inside":        "cus*",
		"full wildcard":      ">",
		"space":              "cus 1",
		"tab":                "cus\t1",
		"newline":            "cus\r\n1",
		"NUL":                "cus\x001",
		"DEL":                "cus\x7f",
		"C1 control":         "cus\u0085",
		"no-break space":     "cus\u00a01",
		"line separator":     "cus\u20281",
		"invalid UTF-8":      "cus\xff",
		"one byte too long":  strings.Repeat("a", MaxSubjectTokenBytes+1),
		"a control line":     strings.Repeat("a", 5000),
		"long and malicious": strings.Repeat("\n", 5000),
	} {
		err := ValidSubjectToken(bad)
		if !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("%s: err = %v, want ErrInvalidSubject", name, err)
			continue
		}
		// The refusal is logged: it must not carry the input whole.
		if len(err.Error()) > 160 {
			t.Errorf("%s: error of %d bytes", name, len(err.Error()))
		}
	}
}

func TestCheckedSubjectBuilders(t *testing.T) {
	longType := strings.Repeat("abcdefghi.", 52) + "x" // 521 bytes of valid tokens
	for name, tc := range map[string]struct {
		build func() (string, error)
		want  string
	}{
		"event":            {func() (string, error) { return CheckedEventSubject("invoice.payment_failed") }, "billing.events.invoice.payment_failed"},
		"event wildcard":   {func() (string, error) { return CheckedEventSubject("customer.*") }, ""},
		"event empty":      {func() (string, error) { return CheckedEventSubject("") }, ""},
		"event empty tok":  {func() (string, error) { return CheckedEventSubject("invoice..paid") }, ""},
		"event trailing":   {func() (string, error) { return CheckedEventSubject("invoice.") }, ""},
		"event 5000 bytes": {func() (string, error) { return CheckedEventSubject(strings.Repeat("a", 5000)) }, ""},
		"event too long":   {func() (string, error) { return CheckedEventSubject(longType) }, ""},
		"event at bound": {func() (string, error) {
			return CheckedEventSubject(strings.Repeat("a", MaxSubjectBytes-len(EventsPrefix)-256-1) + "." + strings.Repeat("b", 256))
		}, EventsPrefix + strings.Repeat("a", MaxSubjectBytes-len(EventsPrefix)-256-1) + "." + strings.Repeat("b", 256)},
		"event past bound": {func() (string, error) {
			return CheckedEventSubject(strings.Repeat("a", MaxSubjectBytes-len(EventsPrefix)-256) + "." + strings.Repeat("b", 256))
		}, ""},
		"status":             {func() (string, error) { return CheckedStatusSubject("cus_1") }, "billing.status.cus_1"},
		"status dotted":      {func() (string, error) { return CheckedStatusSubject("cus_1.>") }, ""},
		"status long":        {func() (string, error) { return CheckedStatusSubject(strings.Repeat("c", 5000)) }, ""},
		"dlq":                {func() (string, error) { return CheckedDLQSubject("crm-sync") }, "billing.dlq.crm-sync"},
		"dlq wildcard":       {func() (string, error) { return CheckedDLQSubject(">") }, ""},
		"replay":             {func() (string, error) { return CheckedReplaySubject("crm-sync", "invoice.paid") }, "billing.replay.crm-sync.invoice.paid"},
		"replay bad type":    {func() (string, error) { return CheckedReplaySubject("crm-sync", "invoice.*") }, ""},
		"replay bad durable": {func() (string, error) { return CheckedReplaySubject("crm.sync", "invoice.paid") }, ""},
	} {
		got, err := tc.build()
		switch {
		case tc.want == "" && !errors.Is(err, ErrInvalidSubject):
			t.Errorf("%s: got %.60q, %v; want ErrInvalidSubject", name, got, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s: got %.60q, %v; want %.60q", name, got, err, tc.want)
		case len(got) > MaxSubjectBytes:
			t.Errorf("%s: %d-byte subject", name, len(got))
		}
	}
}

func TestValidFilterAllowsWildcardsOnlyAsTokens(t *testing.T) {
	for _, ok := range []string{"billing.events.>", "billing.replay.crm-sync.>", "billing.*.invoice.paid", "billing.events.invoice.paid"} {
		if err := validFilter(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "billing.>.paid", "billing.events.invoice*", "billing..events", "billing events.>", strings.Repeat("a.", 300) + ">"} {
		if err := validFilter(bad); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("%.40q: err = %v, want ErrInvalidSubject", bad, err)
		}
	}
}
