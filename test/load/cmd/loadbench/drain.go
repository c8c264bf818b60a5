package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
)

// drainResult is billing-state's own capacity: how fast it applies a
// backlog that waits in JetStream when nothing else competes for the box.
type drainResult struct {
	queued  int // webhooks accepted while the consumers were stopped
	acks    []time.Duration
	sending time.Duration
	applied int           // billing.processed_events rows added from /readyz until the backlog was empty
	took    time.Duration // from /readyz until the backlog was empty
	startup time.Duration // from the restart until /readyz
	batch   metric        // lr_billing_state_batch_size over the drain
	cpu     []*procStat
}

func (r *drainResult) perSec() float64 { return float64(r.applied) / r.took.Seconds() }

// drainPhase stops the three consumers, lets ingress queue webhooks for
// o.queueFor at full speed, then starts billing-state alone and times it until its
// backlog is applied. crm-sync and support-notify are started again once
// it is done.
func drainPhase(s *harness.Stack, sup *supply, o options) (*drainResult, error) {
	bs := s.Procs["billing-state"]
	if bs == nil {
		return nil, fmt.Errorf("drain: billing-state is not running")
	}
	var paused []*harness.Proc
	for _, n := range []string{"billing-state", "crm-sync", "support-notify"} {
		if p := s.Procs[n]; p != nil {
			p.Stop()
			paused = append(paused, p)
		}
	}
	defer func() {
		for _, p := range paused {
			_ = p.Resume()
		}
	}()
	d := harness.NewDriver(s.WebhookURL, s.Secret)
	ctx, cancel := context.WithTimeout(context.Background(), o.queueFor)
	sendStart := time.Now()
	drive(ctx, d, sup, 0, o.conc)
	cancel()
	r := &drainResult{queued: d.Stats().Accepted, acks: d.Stats().AckLatencies, sending: time.Since(sendStart)}

	start := time.Now()
	if err := bs.Resume(); err != nil {
		return nil, err
	}
	if err := s.ReadyErr("billing-state", time.Minute); err != nil {
		return nil, err
	}
	r.startup = time.Since(start)
	start = time.Now()
	applied0 := count(s, `SELECT count(*) FROM billing.processed_events`)
	m0 := scrape(s.Ops["billing-state"] + "/metrics")
	smp := sample(map[string]int{"billing-state": bs.Pid(), "nats-server": s.NATS.Proc.Pid()}, backendPids(s.DB, s.DatabaseName, []string{"billing-state"}))
	if !testkit.Poll(10*time.Minute, 10*time.Millisecond, func() bool {
		n, err := s.ConsumerBacklog("billing-state")
		return err == nil && n == 0
	}) {
		return nil, fmt.Errorf("drain: billing-state did not apply its backlog in 10 minutes")
	}
	r.took = time.Since(start)
	r.cpu = smp.finish()
	r.applied = count(s, `SELECT count(*) FROM billing.processed_events`) - applied0
	r.batch = scrape(s.Ops["billing-state"] + "/metrics")["lr_billing_state_batch_size"].sub(m0["lr_billing_state_batch_size"])
	fmt.Fprintf(os.Stderr, "  drain           %d webhooks queued; billing-state applied %d in %s after it was ready (%.0f/s), mean batch %.1f\n",
		r.queued, r.applied, r.took.Round(time.Millisecond), r.perSec(), r.batch.avg())
	return r, nil
}
