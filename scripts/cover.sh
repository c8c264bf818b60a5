#!/usr/bin/env bash
# Coverage of the billing workflow: Stripe signature and normalisation
# (pkg/stripeevent), the canonical model (pkg/canonical), the bus
# (pkg/bus), the webhook receiver (services/ingress) and billing-state
# (apply, ordering, outbox relay, gRPC). Prints each package and the total,
# and fails under the bar (COVER_BAR, default 80).
#
# Left out: cmd/ mains (signal and logger wiring, exercised by the
# process-level suite in test/e2e) and test-only helper packages
# (journeytest, pgtest, natstest), which are fixtures rather than code
# under test.
set -euo pipefail
cd "$(dirname "$0")/.."
BAR=${COVER_BAR:-80}
EXCLUDE='/cmd/|/internal/journeytest$|/pgtest$|/natstest$'
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run MODULE_DIR PATTERN...: test the module's matching packages with
# coverage of all of them (-coverpkg), so code one package's tests drive in
# another (the service's wiring tests through internal/state and grpcapi)
# counts; on failure show the test output and stop.
run() {
  local dir=$1; shift
  local name pkgs
  name=$(echo "$dir" | tr / _)
  pkgs=$(cd "$dir" && go list "$@" | grep -Ev "$EXCLUDE" || true)
  if [ -z "$pkgs" ]; then
    echo "cover: no packages in $dir for $*" >&2
    exit 1
  fi
  # shellcheck disable=SC2086 # one package per word
  if ! (cd "$dir" && go test -count=1 -covermode=atomic -coverpkg="$(echo $pkgs | tr ' ' ,)" \
      -coverprofile="$out/$name.cov" $pkgs >"$out/$name.log" 2>&1); then
    cat "$out/$name.log" >&2
    echo "cover: tests failed in $dir" >&2
    exit 1
  fi
}
run pkg ./stripeevent ./canonical ./bus
run services/ingress ./...
run services/billing-state ./...

# Merge the profiles (one mode) and report per package and in total. A
# block listed twice (a package measured by two runs) counts once, covered
# if any run covered it.
{
  echo "mode: atomic"
  for f in "$out"/*.cov; do tail -n +2 "$f"; done
} > "$out/all.cov"
awk -v bar="$BAR" -v exclude="$EXCLUDE" '
  /^mode:/ { next }
  {
    block = $1; file = $1; sub(/:.*/, "", file); pkg = file; sub(/\/[^\/]*$/, "", pkg)
    if (pkg ~ exclude) next
    if (!(block in stmts)) { stmts[block] = $2; pkgOf[block] = pkg }
    if ($3 > 0) hit[block] = 1
  }
  END {
    for (b in stmts) { total[pkgOf[b]] += stmts[b]; if (b in hit) covered[pkgOf[b]] += stmts[b] }
    n = 0
    for (k in total) names[++n] = k
    # insertion sort: awk has no portable sort
    for (i = 2; i <= n; i++) { v = names[i]; for (j = i - 1; j >= 1 && names[j] > v; j--) names[j + 1] = names[j]; names[j + 1] = v }
    printf "%-80s %8s %7s\n", "package", "stmts", "cover"
    for (i = 1; i <= n; i++) {
      k = names[i]; T += total[k]; C += covered[k]
      printf "%-80s %8d %6.1f%%\n", k, total[k], 100 * covered[k] / total[k]
    }
    if (T == 0) { print "cover: no statements measured"; exit 1 }
    printf "%-80s %8d %6.1f%%\n", "TOTAL (billing workflow)", T, 100 * C / T
    if (100 * C / T < bar) { printf "coverage %.1f%% is under the %d%% bar\n", 100 * C / T, bar; exit 1 }
    printf "coverage %.1f%% meets the %d%% bar\n", 100 * C / T, bar
  }' "$out/all.cov"
