// Package doctor is `launchready doctor`: it checks a deployment from the
// outside and from its own configuration, the way a payments engineer would
// before going live, and says for each thing it checked what it saw and how
// to fix it. It changes nothing, sends nothing to a customer, and writes no
// billing truth: the one event it posts is a marked probe that every
// consumer recognises and ignores.
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/readiness"
)

const usage = `usage: launchready doctor [--json] [--send] [--only NAME,...]

Checks a deployment before customers find what is wrong with it: every
service's settings, the Stripe key and its mode, the webhook endpoint as
Stripe sees it, the public webhook route end to end, TLS, mail (SPF, DKIM,
DMARC, SMTP), the vendors' credentials, NATS streams and consumers, the
running builds, Postgres migrations, clock skew and the gRPC API. It reads
the same environment as the services. A check whose setting is absent is
listed as not checked. Exits 1 when any check fails, 2 on bad usage.

`

// Status is a check's verdict.
type Status string

// The verdicts. A warning does not fail the command.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Report is what --json prints.
type Report struct {
	Checks []Check `json:"checks"`
	// Skipped names the checks that did not run and why; not part of the
	// verdict.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a check that had nothing to look at.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

func pass(name, detail string) Check { return Check{Name: name, Status: Pass, Detail: detail} }
func warn(name, detail, fix string) Check {
	return Check{Name: name, Status: Warn, Detail: detail, Fix: fix}
}
func fail(name, detail, fix string) Check {
	return Check{Name: name, Status: Fail, Detail: detail, Fix: fix}
}

// errSkip says a check had nothing to look at (its settings are absent);
// its text is the reason.
type errSkip string

func (e errSkip) Error() string { return string(e) }

func skip(format string, args ...any) error { return errSkip(fmt.Sprintf(format, args...)) }

// group is a set of related checks that run together. It returns its
// checks, or an errSkip when it has nothing to check, or another error
// when it could not run at all (reported as one failed check).
type group struct {
	name string
	run  func(d *Doctor, ctx context.Context) ([]Check, error)
}

// groups are every check, in the order the report prints them.
var groups = []group{
	{"config", (*Doctor).checkConfig},
	{"stripe-key", (*Doctor).checkStripeKey},
	{"stripe-endpoint", (*Doctor).checkStripeEndpoint},
	{"clock", (*Doctor).checkClock},
	{"public-route", (*Doctor).checkPublicRoute},
	{"tls", (*Doctor).checkPublicTLS},
	{"mail-dns", (*Doctor).checkMailDNS},
	{"smtp", (*Doctor).checkSMTP},
	{"vendors", (*Doctor).checkVendors},
	{"nats", (*Doctor).checkNATS},
	{"builds", (*Doctor).checkBuilds},
	{"migrations", (*Doctor).checkMigrations},
	{"grpc", (*Doctor).checkGRPC},
}

// Doctor holds what the checks read: the environment and the clients they
// share. The zero value is not usable; New makes one.
type Doctor struct {
	env    *config.Env
	getenv config.Getenv
	// Environ lists the environment as NAME=value (os.Environ), for the
	// checks that look at every setting.
	Environ func() []string
	// Send lets checks that deliver a message run (the Slack webhook).
	Send bool
	// DataDir is the dev data directory (NATS nkeys of `launchready dev`).
	DataDir string
	// HTTP makes every outbound call; it never follows a redirect, since
	// Stripe does not either.
	HTTP *http.Client
	// Now is the clock (tests move it).
	Now func() time.Time
	// CheckTimeout bounds each group.
	CheckTimeout time.Duration
}

// New returns a Doctor reading getenv.
func New(getenv config.Getenv) *Doctor {
	return &Doctor{
		env:          config.New(getenv),
		getenv:       getenv,
		Environ:      os.Environ,
		DataDir:      ".data",
		HTTP:         noRedirectClient(15 * time.Second),
		Now:          time.Now,
		CheckTimeout: 30 * time.Second,
	}
}

func noRedirectClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Run runs the groups named in only (all when empty), each concurrently
// under CheckTimeout, and returns the report in the groups' order.
func (d *Doctor) Run(ctx context.Context, only []string) Report {
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
	}
	type result struct {
		checks []Check
		skip   *Skipped
	}
	results := make([]result, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		if len(want) > 0 && !want[g.name] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gctx, cancel := context.WithTimeout(ctx, d.CheckTimeout)
			defer cancel()
			checks, err := g.run(d, gctx)
			var s errSkip
			switch {
			case errors.As(err, &s):
				results[i] = result{skip: &Skipped{Name: g.name, Reason: string(s)}}
			case err != nil:
				results[i] = result{checks: append(checks, fail(g.name, err.Error(), "see the detail; the check could not run"))}
			default:
				results[i] = result{checks: checks}
			}
		}()
	}
	wg.Wait()
	var r Report
	for _, res := range results {
		r.Checks = append(r.Checks, res.checks...)
		if res.skip != nil {
			r.Skipped = append(r.Skipped, *res.skip)
		}
	}
	return r
}

// Main runs the command; args follow the word "doctor".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("doctor", usage, stderr)
	asJSON := fs.Bool("json", false, `print {"checks": [...]} as JSON`)
	send := fs.Bool("send", false, "also run checks that deliver a message (the Slack webhook)")
	only := fs.String("only", "", "run only these checks (comma list of: "+groupNames()+")")
	dataDir := fs.String("data", ".data", "the dev data directory (NATS nkeys of launchready dev)")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each check")
	if code, ok := cli.ParseFlagsOnly(fs, args); !ok {
		return code
	}
	var names []string
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !knownGroup(n) {
			fmt.Fprintf(stderr, "launchready doctor: unknown check %q (one of %s)\n", n, groupNames())
			return 2
		}
		names = append(names, n)
	}
	d := New(getenv)
	d.Send, d.DataDir, d.CheckTimeout = *send, *dataDir, *timeout
	r := d.Run(ctx, names)
	if url := config.New(getenv).Lookup("DATABASE_URL"); url != "" {
		// The console shows the last report; a deployment whose doctor
		// cannot write it still gets the verdict.
		if err := StoreReport(ctx, url, r); err != nil {
			fmt.Fprintf(stderr, "launchready doctor: report not stored in readiness.doctor_reports: %v\n", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "launchready doctor: %v\n", err)
			return 1
		}
	} else {
		Print(stdout, r)
	}
	if r.Failed() {
		return 1
	}
	return 0
}

// StoreReport keeps r in readiness.doctor_reports, creating the schema
// when missing.
func StoreReport(ctx context.Context, databaseURL string, r Report) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, databaseURL, pg.WithMaxConns(1), pg.WithApplicationName("launchready-doctor"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := readiness.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	_, err = readiness.RecordDoctor(ctx, pool, r)
	return err
}

// Print writes the report as one line per check, then how to fix each
// warning and failure, then what was not checked.
func Print(w io.Writer, r Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	counts := map[Status]int{}
	for _, c := range r.Checks {
		counts[c.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(c.Status)), c.Name, c.Detail)
		if c.Status != Pass && c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	_ = tw.Flush()
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "not checked:")
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Reason)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed\n", counts[Pass], counts[Warn], counts[Fail])
}

func groupNames() string {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.name
	}
	return strings.Join(names, ",")
}

func knownGroup(n string) bool {
	for _, g := range groups {
		if g.name == n {
			return true
		}
	}
	return false
}
