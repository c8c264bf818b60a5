#!/usr/bin/env bash
# Builds Jaeger v1.76.0 (all-in-one, in-memory storage) from the Go module
# proxy and runs it locally. The binary is cached, so only the first build
# pays its cost (about five minutes and 2 GB of memory).
#
#   scripts/jaeger.sh build   build into the cache unless already there; print its path
#   scripts/jaeger.sh path    print the cached binary's path (exit 1 when absent)
#   scripts/jaeger.sh run     build if needed, then run with no config:
#                             OTLP gRPC :4317, OTLP HTTP :4318, UI and query API :16686
#
# JAEGER_CACHE overrides the binary's path.
set -euo pipefail

JAEGER_VERSION=v1.76.0
BIN="${JAEGER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/launchready/jaeger-${JAEGER_VERSION}/jaeger}"

build() {
	if [[ -x "$BIN" ]]; then
		echo "$BIN"
		return 0
	fi
	mkdir -p "$(dirname "$BIN")"
	# One build at a time: a second caller waits, then finds the binary.
	if command -v flock >/dev/null; then
		exec 9>"$BIN.lock"
		flock 9
		if [[ -x "$BIN" ]]; then
			echo "$BIN"
			return 0
		fi
	fi
	local scratch
	scratch="$(mktemp -d)"
	trap 'rm -rf "$scratch"' RETURN
	echo "building jaeger ${JAEGER_VERSION} into $BIN (first time only)" >&2
	(
		cd "$scratch"
		export GOWORK=off GOFLAGS=-mod=mod
		go mod init x >/dev/null 2>&1
		# Jaeger v1.76 still imports the pre-rename sarama module path; pin
		# the last release published under that path so the build resolves.
		go mod edit -replace github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
		go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}" >&2
		# Build next to the destination and rename, so an interrupted build
		# never leaves a half-written binary that later runs would trust.
		go build -o "$BIN.partial" github.com/jaegertracing/jaeger/cmd/jaeger
		mv -f "$BIN.partial" "$BIN"
	)
	echo "$BIN"
}

case "${1:-run}" in
build)
	build
	;;
path)
	[[ -x "$BIN" ]] || { echo "jaeger not built; run scripts/jaeger.sh build" >&2; exit 1; }
	echo "$BIN"
	;;
run)
	build >/dev/null
	shift || true
	exec "$BIN" "$@"
	;;
*)
	echo "usage: $0 build|path|run [jaeger flags]" >&2
	exit 2
	;;
esac
