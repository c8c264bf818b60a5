package auth

import (
	"strings"
	"testing"
	"time"
)

func TestPasswordHashRoundTripAndTampering(t *testing.T) {
	h, err := HashPassword("a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not argon2id in PHC form", h)
	}
	h2, _ := HashPassword("a long enough password")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if !VerifyPassword(h, "a long enough password") || VerifyPassword(h, "a long enough passwore") {
		t.Fatal("verify")
	}
	parts := strings.Split(h, "$")
	for name, bad := range map[string]string{
		"argon2i":     strings.Replace(h, "argon2id", "argon2i", 1),
		"huge memory": strings.Join(append(append([]string{}, parts[:3]...), "m=4194304,t=2,p=1", parts[4], parts[5]), "$"),
		"cut":         h[:len(h)-10],
		"empty":       "",
	} {
		if VerifyPassword(bad, "a long enough password") {
			t.Errorf("%s hash verified", name)
		}
	}
}

func TestPasswordRulesAndOneTimePasswords(t *testing.T) {
	if CheckPasswordRules("short") == nil || CheckPasswordRules(strings.Repeat("x", MaxPasswordLength+1)) == nil {
		t.Fatal("out-of-bounds password accepted")
	}
	a, _ := OneTimePassword()
	b, _ := OneTimePassword()
	if a == b || len(a) != 20 || CheckPasswordRules(a) != nil {
		t.Fatalf("one-time passwords %q %q", a, b)
	}
}

func TestThrottle(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := Throttle{SlowAfter: 3, LockAfter: 10, LockFor: 15 * time.Minute}
	for n, want := range map[int][2]time.Duration{
		1: {0, 0}, 2: {0, 0}, 3: {time.Second, 0}, 4: {2 * time.Second, 0}, 9: {time.Minute, 0}, 10: {0, 15 * time.Minute},
	} {
		next, locked := th.After(n, now)
		gotNext, gotLocked := time.Duration(0), time.Duration(0)
		if !next.IsZero() {
			gotNext = next.Sub(now)
		}
		if !locked.IsZero() {
			gotLocked = locked.Sub(now)
		}
		if gotNext != want[0] || gotLocked != want[1] {
			t.Errorf("After(%d) = wait %s, lock %s; want %s, %s", n, gotNext, gotLocked, want[0], want[1])
		}
	}
}

func TestRoles(t *testing.T) {
	if !Owner.Allows(BillingAdmin) || !Support.Allows(Viewer) || Viewer.Allows(Support) || BillingAdmin.Allows(Owner) {
		t.Fatal("role order")
	}
	if Role("root").Allows(Viewer) {
		t.Fatal("an unknown role may do something")
	}
	if _, err := ParseRole("admin"); err == nil {
		t.Fatal("unknown role parsed")
	}
}

func TestParseRoleMapAndRoleFor(t *testing.T) {
	m, err := ParseRoleMap(" ops-admins=billing_admin, support=support ,owners=owner")
	if err != nil {
		t.Fatal(err)
	}
	c := OIDCConfig{RoleMap: m}
	for _, tc := range []struct {
		groups []string
		want   Role
		ok     bool
	}{
		{[]string{"support"}, Support, true},
		{[]string{"support", "ops-admins"}, BillingAdmin, true},
		{[]string{"owners", "support"}, Owner, true},
		{[]string{"engineering"}, "", false},
		{nil, "", false},
	} {
		if got, ok := c.RoleFor(tc.groups); got != tc.want || ok != tc.ok {
			t.Errorf("RoleFor(%v) = %q %v, want %q %v", tc.groups, got, ok, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{"", "ops-admins", "ops=root", "=viewer"} {
		if _, err := ParseRoleMap(bad); err == nil {
			t.Errorf("ParseRoleMap(%q) accepted", bad)
		}
	}
}
