// Package dlq is `launchready dlq`: list the dead letters in BILLING_DLQ,
// replay one to the consumer that gave up on it once its cause is fixed,
// or purge those that should never be replayed. Replaying is idempotent: a
// consumer applies each event once however often it arrives. It runs as
// the NATS admin user, the only one allowed to read and remove dead
// letters.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
)

const usage = `usage: launchready dlq list [--consumer NAME] [--limit N] [--json]
       launchready dlq replay ID [ID...]
       launchready dlq purge --consumer NAME | --all

list prints dead letters, oldest first: the ID to replay, the consumer that
gave up, the event, how often it was tried and the error. replay puts each
one back for its consumer only and removes it from the DLQ. purge removes
a consumer's dead letters (or all of them) without replaying them.

NATS is --nats, else NATS_URL, else nats://127.0.0.1:4223 (the embedded
server of "launchready dev"). The command connects as NATS_USER (admin)
with the NATS_* credentials, else with the admin nkey "launchready dev"
keeps in <data>/nats/admin.nk. Exits 1 on failure, 2 on bad usage.

`

// Main runs the command; args follow the word "dlq".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, args := args[0], args[1:]
	fs := cli.FlagSet("dlq "+sub, usage, stderr)
	env := config.New(getenv)
	natsURL := fs.String("nats", env.String("NATS_URL", natscreds.DevURL), "NATS server URL")
	dataDir := fs.String("data", ".data", "the dev data directory holding nats/admin.nk")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of the whole command")
	var consumer *string
	var limit *int
	var asJSON, all *bool
	switch sub {
	case "list":
		consumer = fs.String("consumer", "", "only this consumer's dead letters (billing-state, crm-sync, support-notify)")
		limit = fs.Int("limit", 50, "at most this many")
		asJSON = fs.Bool("json", false, "print JSON lines")
	case "purge":
		consumer = fs.String("consumer", "", "purge this consumer's dead letters")
		all = fs.Bool("all", false, "purge every consumer's dead letters")
	}
	rest, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn := natscreds.Conn(env, *dataDir, natsauth.Admin)
	conn.URL = *natsURL
	if err := env.Err(); err != nil {
		fmt.Fprintf(stderr, "launchready dlq: %v\n", err)
		return 2
	}

	// Arguments first, so bad usage never waits on the server.
	var act func(js jetstream.JetStream) int
	switch sub {
	case "list":
		if len(rest) != 0 {
			fs.Usage()
			return 2
		}
		act = func(js jetstream.JetStream) int { return list(ctx, js, *consumer, *limit, *asJSON, stdout, stderr) }
	case "replay":
		if len(rest) == 0 {
			fs.Usage()
			return 2
		}
		var seqs []uint64
		for _, a := range rest {
			seq, err := strconv.ParseUint(a, 10, 64)
			if err != nil || seq == 0 {
				fmt.Fprintf(stderr, "launchready dlq replay: %q is not a dead letter ID (see dlq list)\n", a)
				return 2
			}
			seqs = append(seqs, seq)
		}
		act = func(js jetstream.JetStream) int { return replay(ctx, js, seqs, stdout, stderr) }
	case "purge":
		// Dead letters are the only record of what failed: purging all
		// of them takes an explicit --all.
		if len(rest) != 0 || (*consumer == "") == !*all {
			fs.Usage()
			return 2
		}
		act = func(js jetstream.JetStream) int { return purge(ctx, js, *consumer, stdout, stderr) }
	default:
		fmt.Fprintf(stderr, "launchready dlq: unknown subcommand %q\n\n", sub)
		fmt.Fprint(stderr, usage)
		return 2
	}
	nc, js, err := bus.Connect(ctx, conn, "launchready-dlq", nil)
	if err != nil {
		fmt.Fprintf(stderr, "launchready dlq: %v\n", err)
		return 1
	}
	defer nc.Close()
	return act(js)
}

func purge(ctx context.Context, js jetstream.JetStream, consumer string, stdout, stderr io.Writer) int {
	n, err := bus.PurgeDeadLetters(ctx, js, consumer)
	if err != nil {
		fmt.Fprintf(stderr, "launchready dlq purge: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "purged %d dead letters\n", n)
	return 0
}

type row struct {
	ID        uint64    `json:"id"`
	Consumer  string    `json:"consumer"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Delivered uint64    `json:"delivered"`
	FailedAt  time.Time `json:"failed_at"`
	Error     string    `json:"error"`
}

func list(ctx context.Context, js jetstream.JetStream, consumer string, limit int, asJSON bool, stdout, stderr io.Writer) int {
	dls, err := bus.ListDeadLetters(ctx, js, consumer, limit)
	if err != nil {
		fmt.Fprintf(stderr, "launchready dlq list: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range dls {
			_ = enc.Encode(row{d.Seq, d.Consumer, d.EventID, d.EventType, d.Delivered, d.FailedAt.UTC(), d.Error})
		}
		return 0
	}
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONSUMER\tEVENT\tTYPE\tTRIES\tFAILED AT\tERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Consumer, dash(d.EventID), dash(d.EventType), d.Delivered,
			d.FailedAt.UTC().Format(time.RFC3339), oneLine(d.Error, 120))
	}
	_ = tw.Flush()
	return 0
}

func replay(ctx context.Context, js jetstream.JetStream, seqs []uint64, stdout, stderr io.Writer) int {
	code := 0
	for _, seq := range seqs {
		dl, err := bus.ReplayDeadLetter(ctx, js, seq)
		if err != nil {
			if errors.Is(err, bus.ErrDeadLetterNotFound) {
				fmt.Fprintf(stderr, "launchready dlq replay: %d: no such dead letter (already replayed?)\n", seq)
			} else {
				fmt.Fprintf(stderr, "launchready dlq replay: %v\n", err)
			}
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "replayed %d: %s %s to %s\n", seq, dash(dl.EventID), dash(dl.EventType), dl.Consumer)
	}
	return code
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return string(r)
}
