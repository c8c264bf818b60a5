// Package auth is who a staff member is and what they may do: the roles,
// local passwords (argon2id), the throttle on failed sign-ins and OIDC
// sign-in.
package auth

import (
	"fmt"
	"strings"
)

// Role is a staff member's role. Each includes what the ones before it
// may do.
type Role string

// The roles, least to most.
const (
	Viewer       Role = "viewer"
	Support      Role = "support"
	BillingAdmin Role = "billing_admin"
	Owner        Role = "owner"
)

// Roles lists every role, least to most.
var Roles = []Role{Viewer, Support, BillingAdmin, Owner}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == strings.TrimSpace(s) {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (want viewer, support, billing_admin or owner)", s)
}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i
		}
	}
	return -1
}

// Allows reports whether r may do what need may: an unknown role may do
// nothing.
func (r Role) Allows(need Role) bool { return r.rank() >= 0 && r.rank() >= need.rank() }
