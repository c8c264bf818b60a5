package main

import (
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/launchready/launchready/test/harness"
)

func msf(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func pct(ds []time.Duration) (p50, p95, p99, mx time.Duration) {
	if len(ds) == 0 {
		return
	}
	v := harness.Percentiles(append([]time.Duration(nil), ds...), 0.5, 0.95, 0.99, 1)
	return v[0], v[1], v[2], v[3]
}

// report prints one phase's headline numbers as they come in.
func report(w io.Writer, ph *phase) {
	a50, a95, a99, amax := pct(ph.driver.AckLatencies)
	e50, e95, e99, emax := pct(ph.e2e)
	fmt.Fprintf(w, "  %-15s %s: %d accepted in %s = %.0f/s; ack p50 %sms p95 %sms p99 %sms max %sms; statuses %v\n",
		ph.name, ph.offered, ph.driver.Accepted, ph.elapsed.Round(time.Millisecond), ph.acceptedPerSec(),
		msf(a50), msf(a95), msf(a99), msf(amax), ph.driver.Statuses)
	fmt.Fprintf(w, "  %-15s e2e (%d probes, %d timed out) p50 %sms p95 %sms p99 %sms max %sms; applied %.0f/s, all applied %s after the phase\n",
		"", len(ph.e2e), ph.e2eTO, msf(e50), msf(e95), msf(e99), msf(emax), ph.appliedPerSec(), ph.drained.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-15s billing-state: mean wait %sms, mean batch %.1f, mean batch start to commit %sms, outbox lag %sms; %.0f pool acquires waited, %.2fs acquiring\n",
		"", msf(ph.wait.mean()), ph.batch.avg(), msf(ph.apply.mean()), msf(ph.outboxLag.mean()), ph.poolWaited, ph.poolSeconds)
	for _, p := range ph.procs {
		fmt.Fprintf(w, "  %-15s   %-28s cpu %6.2fs (%.2f s/1000 events) rss peak %6.1f MiB\n", "", p.name, p.cpu,
			perK(p.cpu, ph.driver.Accepted), float64(p.rssPeak)/(1<<20))
	}
	if len(ph.commits) > 0 {
		c50, c95, c99, cmax := pct(ph.commits)
		fmt.Fprintf(w, "  %-15s commit prober (one-row insert every 10 ms, own table): p50 %sms p95 %sms p99 %sms max %sms\n", "", msf(c50), msf(c95), msf(c99), msf(cmax))
	}
	for _, l := range topWaits(ph.waits) {
		fmt.Fprintf(w, "  %-15s   postgres: %s\n", "", l)
	}
}

func perK(cpu float64, events int) float64 {
	if events == 0 {
		return 0
	}
	return cpu / float64(events) * 1000
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func goVersion() string { return runtime.Version() }

func gitRev() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// markdown is RESULTS.md.
func markdown(o options, light, steady, mx, nv *phase, dr *drainResult, vendors, startLoad, startPressure string, total time.Duration) string {
	full := []*phase{steady, mx}
	if light != nil {
		full = []*phase{light, steady, mx}
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	_, sE95, _, _ := pct(steady.e2e)
	_, _, mA99, _ := pct(mx.driver.AckLatencies)
	w("# Load benchmark results")
	w("")
	w("Written by `go run ./test/load/cmd/loadbench -d %s -c %d -rate %d -vendor-latency %s` (the second half of `make bench`) on %s.",
		o.duration, o.conc, o.rate, o.vendorLatency, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	w("")
	w("- Machine: %d CPUs (%s), everything on one box: load generator, nats-server %s, the four services as separate processes, Postgres (shared server), fake vendors. Load average at start: %s; CPU pressure (PSI, share of the last minute some task waited for a CPU): %s.",
		harness.NumCPU(), cpuModel(), "v2.15 (file storage)", startLoad, startPressure)
	w("- Build: %s, %s. Services at their defaults (`CONSUMER_CONCURRENCY=8`, `LOG_LEVEL=%s`), tracing without an exporter.", gitRev(), goVersion(), o.logLevel)
	if o.env != "" || o.services != "" {
		w("- Overrides: services %q, environment %q.", o.services, o.env)
	}
	if o.nice != "" {
		w("- CPU priority: %s ran at a lower priority (nice increments `%s`); the rest at the default.", o.nice, o.nice)
	}
	w("- Events: realistic Stripe payloads from `shared/fixtures/stripe` (scenario templates: lifecycles, trials, refunds, disputes, basil shapes, noise), every body a new event of a new customer. HubSpot, Zendesk and Slack fakes answer in %s.", o.vendorLatency)
	w("- End-to-end latency: probe customers flip a subscription between active and past_due (%d probes/s, part of the load); measured from the POST until `GetCustomerStatus` returns the new status (polled over gRPC every %s, then backing off to 50 ms after ten polls).", o.probeRate, pollEvery)
	w("- Run took %s.", total.Round(time.Second))
	w("")
	w("## Targets")
	w("")
	w("| target | measured | |")
	w("|---|---|---|")
	w("| ≥ 5,000 webhooks/s accepted with p99 ack ≤ 25 ms | %.0f/s at p99 %s ms (max-rate phase, c=%d) | %s |",
		mx.acceptedPerSec(), msf(mA99), o.conc, yes(mx.acceptedPerSec() >= 5000 && mA99 <= 25*time.Millisecond))
	w("| end-to-end p95 ≤ 100 ms at 500 events/s | p95 %s ms at %.0f/s accepted | %s |", msf(sE95), steady.acceptedPerSec(),
		yes(sE95 <= 100*time.Millisecond && len(steady.e2e) > 0 && steady.acceptedPerSec() >= float64(o.rate)*0.95))
	if light != nil {
		_, lE95, _, _ := pct(light.e2e)
		w("| (context, not a target) end-to-end p95 when nothing queues | p95 %s ms at %.0f/s accepted | |", msf(lE95), light.acceptedPerSec())
	}
	w("| ≥ 2,000 events/s applied (billing-state) | %.0f/s during the max-rate phase, sharing the box with ingress, the load generator and the other consumers | %s |", mx.appliedPerSec(), yes(mx.appliedPerSec() >= 2000))
	if dr != nil {
		_, _, q99, _ := pct(dr.acks)
		w("| (context, not the target) webhooks accepted while the consumers are stopped: the ingress path alone, consumers catching up later | %.0f/s at p99 %s ms (c=%d) | |",
			float64(dr.queued)/dr.sending.Seconds(), msf(q99), o.conc)
		w("| ≥ 2,000 events/s applied (billing-state), alone on a backlog | %.0f/s: %d events queued in JetStream while the consumers were stopped, applied in %s (mean batch %.1f) | %s |",
			dr.perSec(), dr.applied, dr.took.Round(time.Millisecond), dr.batch.avg(), yes(dr.perSec() >= 2000))
	}
	if nv != nil {
		ratio := mx.acceptedPerSec() / max(nv.acceptedPerSec(), 0.001)
		w("| ≥ 5× the naive baseline's throughput, vendors at %s | %.0f/s vs %.1f/s = %.0f× | %s |", o.vendorLatency, mx.acceptedPerSec(), nv.acceptedPerSec(), ratio, yes(ratio >= 5))
	}
	w("| zero events lost, zero duplicated side effects under chaos | `go test ./test/chaos` (part of `make test`): 2,000 events, 10%% duplicates, shuffled, through kill -9 of every consumer, a nats-server restart and a database cut | see the test |")
	w("")
	w("## Phases")
	w("")
	w("| phase | offered | accepted/s | ack p50 / p95 / p99 / max (ms) | end-to-end p50 / p95 / p99 / max (ms) | applied/s | backlog applied after the phase |")
	w("|---|---|---|---|---|---|---|")
	for _, ph := range append(append([]*phase(nil), full...), nv) {
		if ph == nil {
			continue
		}
		a50, a95, a99, amax := pct(ph.driver.AckLatencies)
		e50, e95, e99, emax := pct(ph.e2e)
		e2e := fmt.Sprintf("%s / %s / %s / %s (%d probes", msf(e50), msf(e95), msf(e99), msf(emax), len(ph.e2e))
		if ph.e2eTO > 0 {
			e2e += fmt.Sprintf(", %d timed out", ph.e2eTO)
		}
		if ph.e2eSkip > 0 {
			e2e += fmt.Sprintf(", %d skipped: %d in flight", ph.e2eSkip, maxInFlight)
		}
		e2e += ")"
		drained := ph.drained.Round(10 * time.Millisecond).String()
		if ph.name == "naive baseline" {
			e2e = fmt.Sprintf("%s / %s / %s / %s (= ack: it answers when done)", msf(e50), msf(e95), msf(e99), msf(emax))
			drained = "n/a"
		}
		codes := ""
		for _, c := range []int{503, 500, 400} {
			if n := ph.driver.Statuses[c]; n > 0 {
				codes += fmt.Sprintf(", %d×%d", n, c)
			}
		}
		w("| %s | %s | %.0f (%d in %s%s) | %s / %s / %s / %s | %s | %.0f | %s |", ph.name, ph.offered, ph.acceptedPerSec(),
			ph.driver.Accepted, ph.elapsed.Round(100*time.Millisecond), codes, msf(a50), msf(a95), msf(a99), msf(amax), e2e, ph.appliedPerSec(), drained)
	}
	w("")
	w("Vendor side effects (asynchronous in Launch Ready): %s. CRM syncs completed during the max-rate phase: %d (%.0f/s).", vendors, mx.vendorCRM, float64(mx.vendorCRM)/mx.elapsed.Seconds())
	w("")
	if dr != nil {
		w("## billing-state alone on a backlog")
		w("")
		w("ingress accepted %d webhooks in %s (c=%d) while billing-state, crm-sync and support-notify were stopped; then billing-state alone was started. It answered `/readyz` after %s and applied %d events in the %s that followed: **%.0f events/s**, in transactions of %.1f events on average (`lr_billing_state_batch_size`).",
			dr.queued, dr.sending.Round(100*time.Millisecond), o.conc, dr.startup.Round(time.Millisecond), dr.applied, dr.took.Round(time.Millisecond), dr.perSec(), dr.batch.avg())
		w("")
		w("| process | CPU-s / 1,000 applied | RSS peak MiB |")
		w("|---|---|---|")
		for _, p := range dr.cpu {
			w("| %s | %.3f | %s |", p.name, perK(p.cpu, dr.applied), rssCell(p))
		}
		w("")
	}
	w("## CPU and memory per process")
	w("")
	w("CPU-seconds per 1,000 accepted webhooks over the phase (from `/proc/<pid>/stat`), and peak RSS (`VmRSS`, sampled every 250 ms).")
	w("")
	head, rule := "| process |", "|---|"
	for _, ph := range full {
		head += fmt.Sprintf(" %s: CPU-s / 1,000 | %s: RSS peak MiB |", ph.name, ph.name)
		rule += "---|---|"
	}
	w("%s", head)
	w("%s", rule)
	totals := make([]float64, len(full))
	for i, p := range full[0].procs {
		row := "| " + p.name + " |"
		for k, ph := range full {
			q := ph.procs[i]
			row += fmt.Sprintf(" %.3f | %s |", perK(q.cpu, ph.driver.Accepted), rssCell(q))
			if !strings.HasPrefix(p.name, "loadbench") {
				totals[k] += perK(q.cpu, ph.driver.Accepted)
			}
		}
		w("%s", row)
	}
	row := "| **system total** (without the load generator) |"
	for _, v := range totals {
		row += fmt.Sprintf(" **%.3f** | |", v)
	}
	w("%s", row)
	if light != nil {
		w("")
		w("At %d/s the per-event figures include a fixed cost spread over few events: idle polling (consumer fetches, health checks) and the probes' own `GetCustomerStatus` reads.", o.lightRate)
	}
	workers := 8
	for _, kv := range strings.Split(o.env, ",") {
		kv = strings.TrimPrefix(kv, "billing-state:")
		if v, ok := strings.CutPrefix(kv, "CONSUMER_CONCURRENCY="); ok {
			_, _ = fmt.Sscan(v, &workers)
		}
	}
	w("")
	w("## Why: the numbers behind the bottlenecks")
	w("")
	for _, ph := range full {
		cpuAll := 0.0
		var bsCPU float64
		for _, p := range ph.procs {
			cpuAll += p.cpu
			if p.name == "billing-state" {
				bsCPU = p.cpu
			}
		}
		perEvent := 0.0
		if ph.applied > 0 {
			perEvent = bsCPU / float64(ph.applied) * 1000
		}
		batch := max(ph.batch.avg(), 1)
		w("- %s: an event waited %s ms on average from JetStream storing it until billing-state started on it (`lr_consumer_wait_seconds`). "+
			"billing-state applied in transactions of %.1f events on average (`lr_billing_state_batch_size`), each taking %s ms from its start to its commit "+
			"(`lr_billing_state_apply_seconds`, %d deliveries), and spent %.2f ms of its own CPU per event: with %d workers that caps it at ≈ %.0f events/s. "+
			"Its database pool made %.0f acquires wait for a connection, and spent %.2f s acquiring in all (`lr_db_pool_acquires_waited_total`, `lr_db_pool_acquire_seconds_total`). "+
			"Outbox lag to `billing.status.*` (Watch) averaged %s ms. "+
			"All processes together (load generator and Postgres backends included) used %.2f CPU-s per 1,000 webhooks: two idle CPUs could carry at most ≈ %.0f/s at that cost.",
			ph.name, msf(ph.wait.mean()), batch, msf(ph.apply.mean()), int(ph.apply.count), perEvent, workers, float64(workers)*batch/max(ph.apply.mean().Seconds(), 1e-6),
			ph.poolWaited, ph.poolSeconds, msf(ph.outboxLag.mean()), perK(cpuAll, ph.driver.Accepted), 2000/max(perK(cpuAll, ph.driver.Accepted), 1e-6))
	}
	w("")
	w("## Where the time goes in Postgres")
	w("")
	w("A commit prober inserted one row into a table of its own every 10 ms during each phase (autocommit, through the harness's pool): the time any commit took on this Postgres, whatever the services did.")
	w("")
	w("| phase | probe commits | p50 / p95 / p99 / max (ms) |")
	w("|---|---|---|")
	for _, ph := range full {
		c50, c95, c99, cmax := pct(ph.commits)
		w("| %s | %d | %s / %s / %s / %s |", ph.name, len(ph.commits), msf(c50), msf(c95), msf(c99), msf(cmax))
	}
	w("")
	w("What the stack's database sessions were doing, sampled every 10 ms from `pg_stat_activity` (share of non-idle samples; each session's `application_name` names its service).")
	for _, ph := range full {
		w("")
		w("%s:", ph.name)
		w("")
		for _, l := range topWaits(ph.waits) {
			w("- %s", l)
		}
	}
	if len(mx.profiles) > 0 {
		w("")
		w("## CPU profiles (max-rate phase, `perf record -g`, self time)")
		names := make([]string, 0, len(mx.profiles))
		for n := range mx.profiles {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			w("")
			w("%s:", n)
			w("")
			w("```")
			w("%s", mx.profiles[n])
			w("```")
		}
	}
	if nv != nil {
		w("")
		w("Naive baseline process: ")
		for _, p := range nv.procs {
			w("- %s: %.3f CPU-s per 1,000, RSS peak %.1f MiB", p.name, perK(p.cpu, nv.driver.Accepted), float64(p.rssPeak)/(1<<20))
		}
	}
	return b.String()
}

// rssCell is a process's peak RSS in MiB; Postgres backends share memory.
func rssCell(p *procStat) string {
	if p.backends != nil {
		return "(shared memory)"
	}
	return fmt.Sprintf("%.1f", float64(p.rssPeak)/(1<<20))
}
