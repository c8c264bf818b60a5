package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/launchready/launchready/services/console/internal/auth"
)

const example = `
refund_caps:
  billing_admin: 50000
  owner: 500000
approval:
  refund_above: 20000
  kinds: [cancel_subscription]
`

func TestCheck(t *testing.T) {
	p, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		role    auth.Role
		kind    string
		amount  int64
		approve bool
		refused bool
	}{
		{auth.BillingAdmin, Refund, 1500, false, false},
		{auth.BillingAdmin, Refund, 20000, false, false},
		{auth.BillingAdmin, Refund, 20001, true, false},
		{auth.BillingAdmin, Refund, 50001, false, true},
		{auth.Owner, Refund, 400000, true, false},
		{auth.BillingAdmin, Cancel, 0, true, false},
		{auth.BillingAdmin, ChangePlan, 0, false, false},
	}
	for _, c := range cases {
		approve, err := p.Check(c.role, c.kind, c.amount)
		var ref *Refusal
		if approve != c.approve || errors.As(err, &ref) != c.refused {
			t.Errorf("Check(%s, %s, %d) = %v, %v; want approval %v, refused %v", c.role, c.kind, c.amount, approve, err, c.approve, c.refused)
		}
	}
	if p.CanApprove(auth.BillingAdmin, Refund, 60000) || !p.CanApprove(auth.Owner, Refund, 60000) {
		t.Error("an approver's cap should bound what they approve")
	}
}

func TestParseRefusesWhatItDoesNotKnow(t *testing.T) {
	for _, bad := range []string{
		"refund_caps: {root: 10}",
		"refund_caps: {owner: -1}",
		"approval: {kinds: [refunds]}",
		"approval: {refund_abov: 10}",
		"refund_cap: {owner: 10}",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestLoad(t *testing.T) {
	p, err := Load("")
	if err != nil || len(p.RefundCaps) != 0 {
		t.Fatalf("default: %+v %v", p, err)
	}
	if approve, err := p.Check(auth.BillingAdmin, Refund, 1<<40); approve || err != nil {
		t.Fatalf("the default policy should leave it to the roles: %v %v", approve, err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := Load(path); err != nil || p.RefundCaps[auth.Owner] != 500000 {
		t.Fatalf("load: %+v %v", p, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file should be an error")
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	_ = os.WriteFile(empty, nil, 0o600)
	if _, err := Load(empty); err != nil {
		t.Fatalf("an empty file is the default policy: %v", err)
	}
}
