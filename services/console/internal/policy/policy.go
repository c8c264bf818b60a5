// Package policy is CONSOLE_POLICY: how much each role may refund, and
// which actions wait for a second staff member's approval before they
// run. The console checks it on the server before any call to Stripe.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/launchready/launchready/services/console/internal/auth"
)

// Kinds of action, as billing-state names them.
const (
	Refund     = "refund"
	Cancel     = "cancel_subscription"
	ChangePlan = "change_plan"
)

// Policy is the file, read. Amounts are in the smallest currency unit
// (cents), the unit Stripe and the refund form use.
//
//	refund_caps:            # the most one refund may be, per role;
//	  billing_admin: 50000  # a role not listed may refund any amount
//	  owner: 500000
//	approval:
//	  refund_above: 20000   # a refund above this waits for a second staff member
//	  kinds: [cancel_subscription]  # these always wait
type Policy struct {
	RefundCaps map[auth.Role]int64 `yaml:"refund_caps"`
	Approval   struct {
		// RefundAbove: a refund of more than this needs approval; 0 means
		// no refund does.
		RefundAbove int64    `yaml:"refund_above"`
		Kinds       []string `yaml:"kinds"`
	} `yaml:"approval"`
}

// Load reads the policy at path; an empty path is the default policy: no
// cap and no approval (the roles alone decide).
func Load(path string) (Policy, error) {
	if path == "" {
		return Policy{}, nil
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's own setting
	if err != nil {
		return Policy{}, fmt.Errorf("CONSOLE_POLICY: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return Policy{}, fmt.Errorf("CONSOLE_POLICY %s: %w", path, err)
	}
	return p, nil
}

// Parse reads a policy document; an unknown field, role or kind is an
// error, not a silent no.
func Parse(b []byte) (Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document is the default policy.
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Policy{}, err
	}
	for r, cap := range p.RefundCaps {
		if _, err := auth.ParseRole(string(r)); err != nil {
			return Policy{}, fmt.Errorf("refund_caps: %w", err)
		}
		if cap < 0 {
			return Policy{}, fmt.Errorf("refund_caps: %s: a cap must not be negative", r)
		}
	}
	if p.Approval.RefundAbove < 0 {
		return Policy{}, errors.New("approval.refund_above must not be negative")
	}
	for _, k := range p.Approval.Kinds {
		if k != Refund && k != Cancel && k != ChangePlan {
			return Policy{}, fmt.Errorf("approval.kinds: unknown kind %q (want refund, cancel_subscription or change_plan)", k)
		}
	}
	return p, nil
}

// Refusal is why the policy refuses an action outright.
type Refusal struct {
	Role   auth.Role
	Amount int64
	Cap    int64
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("a refund of %d is above the %s cap of %d", r.Amount, r.Role, r.Cap)
}

// Check decides an action of kind by role (amount only for refunds): an
// error (a *Refusal) when the role may not make it at all, else whether a
// second staff member must approve it before it runs.
func (p Policy) Check(role auth.Role, kind string, amount int64) (needsApproval bool, err error) {
	if kind == Refund {
		if cap, ok := p.RefundCaps[role]; ok && amount > cap {
			return false, &Refusal{Role: role, Amount: amount, Cap: cap}
		}
		if p.Approval.RefundAbove > 0 && amount > p.Approval.RefundAbove {
			return true, nil
		}
	}
	for _, k := range p.Approval.Kinds {
		if k == kind {
			return true, nil
		}
	}
	return false, nil
}

// CanApprove reports whether role may approve an action of kind for
// amount: an approver's own cap bounds what they approve.
func (p Policy) CanApprove(role auth.Role, kind string, amount int64) bool {
	if kind != Refund {
		return true
	}
	cap, ok := p.RefundCaps[role]
	return !ok || amount <= cap
}
