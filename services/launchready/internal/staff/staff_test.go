package staff

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg/pgtest"
)

func TestStaffAdd(t *testing.T) {
	db := pgtest.NewDatabase(t)
	env := config.Map(map[string]string{"DATABASE_URL": db})
	run := func(stdin string, terminal bool, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Run(t.Context(), args, env, strings.NewReader(stdin), terminal, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// From a pipe: the password is the first line.
	if code, out, errOut := run("a piped long password\n", false, "add", "--email", "pia@example.com", "--role", "support"); code != 0 || strings.Contains(out, "one-time") {
		t.Fatalf("piped: %d %q %q", code, out, errOut)
	}
	// On a terminal: a one-time password is printed.
	code, out, _ := run("", true, "add", "--email", "otto@example.com", "--role", "owner")
	if code != 0 || !strings.Contains(out, "one-time password: ") {
		t.Fatalf("terminal: %d %q", code, out)
	}
	// Refusals.
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{"x\n", []string{"add", "--email", "pia@EXAMPLE.com", "--role", "support"}, 1}, // exists, any case
		{"short\n", []string{"add", "--email", "new@example.com", "--role", "viewer"}, 1},
		{"a piped long password\n", []string{"add", "--email", "new@example.com", "--role", "admin"}, 1},
		{"", []string{"add", "--email", "new@example.com"}, 2},
		{"", []string{"remove"}, 2},
	} {
		if code, _, _ := run(c.stdin, false, c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
	}

	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT email, role, must_change_password, password_hash LIKE '$argon2id$%' FROM console.staff ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		email, role      string
		mustChange, argo bool
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.email, &x.role, &x.mustChange, &x.argo)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []row{{"pia@example.com", "support", false, true}, {"otto@example.com", "owner", true, true}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("staff rows %+v, want %+v", got, want)
	}
	var audits int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM console.audit_log WHERE action = 'staff_add' AND actor LIKE 'cli%'`).Scan(&audits); err != nil || audits != 2 {
		t.Fatalf("staff_add audit rows: %d %v", audits, err)
	}
}
