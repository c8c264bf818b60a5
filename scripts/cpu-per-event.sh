#!/usr/bin/env bash
# The whole system's CPU cost per event, split by process and service:
# `launchready dev` at its defaults on a fresh database of the local
# Postgres, driven by the load generator of ../shared/bench (the same
# unique signed customer.subscription.updated events as vs-peer.sh), until
# billing-state has applied and crm-sync has synced every event.
#
# The dev process's CPU (utime+stime from /proc) is split by service with a
# CPU profile whose goroutines carry pprof label service=<name>
# (LR_PPROF_ADDR); each Postgres backend's CPU is read from /proc and
# counted for the service its application_name names.
#
# Usage, from the repository root: scripts/cpu-per-event.sh [N events, default 20000] [C, default 16]
# (SHARED_BENCH names the bench directory when it is not ../shared/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; C=${2:-16}
LOADGEN_SRC=${SHARED_BENCH:-../shared/bench}/loadgen
if [ ! -d "$LOADGEN_SRC" ]; then
	echo "cpu-per-event: NOT RUN: $LOADGEN_SRC (the vs-peer load generator) is not there" >&2
	exit 1
fi
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
OUT=$(mktemp -d); DATA=$OUT/data; mkdir -p "$DATA"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
(cd "$LOADGEN_SRC" && go build -o "$OUT/loadgen" .)
go build -o "$OUT/launchready" ./services/launchready/cmd/launchready

DB="cpuevent_$(date +%s)_$$"; psql -qtAc "create database $DB" postgres >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/$DB?sslmode=disable"
SECRET="whsec_cpu$(openssl rand -hex 12)"; IP=$(port); PP=$(port); OPS_I=$(port); OPS_B=$(port); OPS_C=$(port)
(cd "$DATA" && INGRESS_ADDR=127.0.0.1:$IP GRPC_ADDR=127.0.0.1:$(port) STRIPE_WEBHOOK_SECRET=$SECRET LR_PPROF_ADDR=127.0.0.1:$PP \
	STATUS_API_TOKENS="bench=tok$(openssl rand -hex 16):read" CONSOLE_ADDR=127.0.0.1:$(port) \
	INGRESS_HTTP_ADDR=127.0.0.1:$OPS_I BILLING_STATE_HTTP_ADDR=127.0.0.1:$OPS_B CRM_SYNC_HTTP_ADDR=127.0.0.1:$OPS_C \
	SUPPORT_NOTIFY_HTTP_ADDR=127.0.0.1:$(port) CONSOLE_HTTP_ADDR=127.0.0.1:$(port) \
	exec setsid sh -c 'echo $$ >pid; exec "$0" dev -nats-port "$1"' "$OUT/launchready" "$(port)" >"$OUT/dev.log" 2>&1) &
for _ in $(seq 1 1200); do [ -s "$DATA/pid" ] && break; sleep 0.1; done
PID=$(cat "$DATA/pid")
cleanup() {
	kill -TERM -- -"$PID" 2>/dev/null || true
	for _ in $(seq 1 40); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
	psql -qtAc "drop database if exists $DB with (force)" postgres >/dev/null || true
	[ -n "${KEEP:-}" ] && echo "kept $OUT" >&2 || rm -rf "$OUT"
}
trap cleanup EXIT
ready() { for p in "$OPS_I" "$OPS_B" "$OPS_C"; do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 || return 1; done; }
for _ in $(seq 1 300); do ready && break; sleep 1; done
ready || { echo "cpu-per-event: launchready dev did not get ready; its log:" >&2; tail -20 "$OUT/dev.log" >&2; exit 1; }

# CPU ticks of the dev process, and of each database session by application_name.
devticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
pgticks() {
	psql -qtAF' ' -c "select pid, coalesce(nullif(application_name, ''), 'other') from pg_stat_activity where datname = '$DB'" postgres |
		while read -r p a; do [ -r "/proc/$p/stat" ] && echo "$a $(awk '{print $14+$15}' "/proc/$p/stat")"; done |
		awk '{s[$1] += $2} END {for (k in s) print k, s[k]}'
}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg); D0=$(devticks); pgticks >"$OUT/pg0"
# The profile spans the run; its split applies to the dev process's CPU.
curl -s -o "$OUT/cpu.pprof" "http://127.0.0.1:$PP/debug/pprof/profile?seconds=${PROFILE_SECONDS:-30}" &
PROF=$!
T0=$(date +%s.%N)
"$OUT/loadgen" -url "http://127.0.0.1:$IP/webhooks/stripe" -secret "$SECRET" -n "$N" -c "$C" \
	-dsn "$DATABASE_URL" -applied 'select count(*) from billing.processed_events where event_id like $1' >"$OUT/loadgen.json"
synced=0
for _ in $(seq 1 1200); do
	synced=$(psql -qtAc "select count(*) from crm.processed_events" "$DATABASE_URL")
	[ "$synced" -ge "$N" ] && break
	sleep 0.25
done
T1=$(date +%s.%N); D1=$(devticks); pgticks >"$OUT/pg1"; LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
wait "$PROF" || true
go tool pprof -tags "$OUT/cpu.pprof" >"$OUT/tags" 2>/dev/null || true

python3 - "$OUT" "$N" "$D0" "$D1" "$(getconf CLK_TCK)" "$T0" "$T1" "$synced" "$LOAD0" "$LOAD1" <<'PY'
import json, re, sys
out, n, d0, d1, hz, t0, t1, synced, load0, load1 = sys.argv[1:]
n, hz = int(n), int(hz)
dev_ms = (int(d1) - int(d0)) * 1000 / hz
def ticks(f):
    r = {}
    for line in open(f):
        k, v = line.split()
        r[k] = int(v)
    return r
p0, p1 = ticks(out + "/pg0"), ticks(out + "/pg1")
share, in_service = {}, False
for line in open(out + "/tags"):
    if line.strip().startswith("service:"):
        in_service = True
        continue
    m = re.match(r"\s*\S+\s*\(\s*([\d.]+)%\):\s*(\S+)", line)
    if in_service and m:
        share[m.group(2)] = float(m.group(1))
    elif in_service and not line.strip():
        in_service = False
share["(runtime: GC, scheduler)"] = max(0.0, 100 - sum(share.values()))
lg = json.load(open(out + "/loadgen.json"))
print("launchready dev, %d events at c=%s: accepted %.0f/s, ack p99 %.1f ms, applied %.0f/s; crm-sync synced %s; %.1f s; load average %s -> %s" % (
    n, lg["concurrency"], lg["ack_per_s"], lg["ack_p99_ms"], lg.get("applied_per_s", 0), synced, float(t1) - float(t0), load0, load1))
print("| process | part | CPU-ms per event |")
print("|---|---|---|")
for k, v in sorted(share.items(), key=lambda kv: -kv[1]):
    print("| launchready dev | %s | %.3f |" % (k, dev_ms * v / 100 / n))
pg_ms = 0.0
for k in sorted(set(p0) | set(p1)):
    ms = (p1.get(k, 0) - p0.get(k, 0)) * 1000 / hz
    pg_ms += ms
    print("| postgres | %s | %.3f |" % (k, ms / n))
print("| **whole system** | | **%.3f** |" % ((dev_ms + pg_ms) / n))
PY
