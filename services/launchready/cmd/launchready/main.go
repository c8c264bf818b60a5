// Command launchready is the operator's tool: `dev` runs the whole system in
// one process, `send` posts a signed event, `status` shows a customer, `dlq`
// lists, replays and purges dead letters, `provision` makes the streams,
// `backfill` catches up from Stripe's API on what webhooks missed, `drift`
// finds (and repairs) what still differs from Stripe, `staff` adds the
// console's local staff accounts, and `doctor` checks a deployment before
// customers find what is wrong with it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/services/launchready/internal/backfill"
	"github.com/launchready/launchready/services/launchready/internal/dev"
	"github.com/launchready/launchready/services/launchready/internal/dlq"
	"github.com/launchready/launchready/services/launchready/internal/doctor"
	"github.com/launchready/launchready/services/launchready/internal/drift"
	"github.com/launchready/launchready/services/launchready/internal/provision"
	"github.com/launchready/launchready/services/launchready/internal/send"
	"github.com/launchready/launchready/services/launchready/internal/smoke"
	"github.com/launchready/launchready/services/launchready/internal/staff"
	"github.com/launchready/launchready/services/launchready/internal/status"
)

type command struct {
	name, usage string
	main        func(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int
}

var commands = []command{
	{"dev", "run every service in one process on an embedded JetStream", dev.Main},
	{"send", "sign a Stripe event payload and post it to ingress", send.Main},
	{"status", "print a customer's canonical billing status", status.Main},
	{"dlq", "list, replay or purge dead letters (dlq list | dlq replay ID | dlq purge)", dlq.Main},
	{"provision", "create or update the JetStream streams, as the NATS admin user", provision.Main},
	{"backfill", "publish the events webhooks missed, read from Stripe's API (--since 72h)", backfill.Main},
	{"staff", "add a local staff account to the console (staff add --email E --role R)", staff.Main},
	{"doctor", "check a deployment before customers do (--json for machines)", doctor.Main},
	{"drift", "list customers whose status differs from Stripe's; exit 1 if any (--fix repairs)", drift.Main},
	{"smoke", "prove every alert and support channel still delivers (--via webhook|stripe)", smoke.Main},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func realMain(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.main(ctx, args[1:], os.Getenv, os.Stdout, os.Stderr)
		}
	}
	fmt.Fprintf(os.Stderr, "launchready: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: launchready <command> [arguments]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.usage)
	}
}
