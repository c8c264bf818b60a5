// Package staff is `launchready staff`: manage the console's local staff
// accounts. `staff add` creates one; its password comes from standard
// input when that is not a terminal (a script, a secret manager), else a
// one-time password is printed that must be changed at the first sign-in.
package staff

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/services/console"
)

const usage = `usage: launchready staff add --email EMAIL --role ROLE

Adds a local staff account to the console. ROLE is viewer, support,
billing_admin or owner. When standard input is not a terminal, its first
line is the password (12 characters or more); otherwise a one-time password
is printed, to be changed at the first sign-in.

The database is --database, else DATABASE_URL, else the local server.
Exits 1 on failure, 2 on bad usage.
`

// Main runs the command; args follow the word "staff".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	return Run(ctx, args, getenv, os.Stdin, term.IsTerminal(int(os.Stdin.Fd())), stdout, stderr)
}

// Run is Main with standard input given, and whether it is a terminal.
func Run(ctx context.Context, args []string, getenv config.Getenv, stdin io.Reader, stdinIsTerminal bool, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprint(stderr, usage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return 0
		}
		return 2
	}
	fs := flag.NewFlagSet("staff add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	env := config.New(getenv)
	email := fs.String("email", "", "the staff member's email (their sign-in name)")
	role := fs.String("role", "", "viewer, support, billing_admin or owner")
	dbURL := fs.String("database", env.String("DATABASE_URL", pg.DefaultURL), "Postgres URL")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *email == "" || *role == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var password string
	if !stdinIsTerminal {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "launchready staff add: read the password from standard input: %v\n", err)
			return 1
		}
		password = strings.TrimRight(line, "\r\n")
		if password == "" {
			fmt.Fprintln(stderr, "launchready staff add: standard input is not a terminal but holds no password")
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	oneTime, err := console.AddStaff(ctx, *dbURL, console.NewStaff{Email: *email, Role: *role, Password: password, Actor: actor()})
	if err != nil {
		fmt.Fprintf(stderr, "launchready staff add: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "added %s (%s)\n", *email, *role)
	if oneTime != "" {
		fmt.Fprintf(stdout, "one-time password: %s\nIt must be changed at the first sign-in.\n", oneTime)
	}
	return 0
}

// actor names who ran the command in the audit log.
func actor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}
