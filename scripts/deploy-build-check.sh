#!/usr/bin/env bash
# Builds every service the way deploy/Dockerfile does, without Docker:
# the same files copied into a scratch tree with the same layout (proto/,
# pkg/, services/<name>/, deploy/healthcheck/, test/testkit's go.mod and
# go.sum), then, from the service's own directory, GOWORK=off
# CGO_ENABLED=0 go mod download and go build -trimpath -ldflags "-s -w".
# A missing replace, an incomplete go.sum or an import of anything the image
# does not copy fails here as it would fail in `docker build`.
#
#   scripts/deploy-build-check.sh                 every image: the four services, provision and launchready
#   scripts/deploy-build-check.sh ingress crm-sync  some of them
#
# OUT=dir keeps the binaries (default: a temporary directory, removed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES=("$@")
if [[ ${#SERVICES[@]} -eq 0 ]]; then
	SERVICES=(ingress billing-state crm-sync support-notify console provision launchready)
fi

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
OUT="${OUT:-$SCRATCH/out}"
mkdir -p "$OUT"

# Mirror deploy/Dockerfile.dockerignore: no tests, no testdata, no .env.
copy_tree() {
	local rel="$1" dst="$2"
	mkdir -p "$dst/$rel"
	(cd "$ROOT/$rel" && tar --exclude='*_test.go' --exclude='testdata' --exclude='.env' -cf - .) | (cd "$dst/$rel" && tar -xf -)
}

export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly

failed=()
for svc in "${SERVICES[@]}"; do
	if [[ ! -d "$ROOT/services/$svc/cmd/$svc" ]]; then
		echo "FAIL $svc: services/$svc/cmd/$svc does not exist" >&2
		failed+=("$svc")
		continue
	fi
	ctx="$SCRATCH/ctx-$svc"
	copy_tree proto "$ctx"
	copy_tree pkg "$ctx"
	copy_tree "services/$svc" "$ctx"
	# Sibling services the module replaces (the launchready CLI runs them all).
	for dep in $(sed -nE 's#.*=> \.\./([a-z-]+)$#\1#p' "$ROOT/services/$svc/go.mod"); do
		copy_tree "services/$dep" "$ctx"
	done
	copy_tree deploy/healthcheck "$ctx"
	mkdir -p "$ctx/test/testkit" && cp "$ROOT"/test/testkit/go.{mod,sum} "$ctx/test/testkit/"
	if ! (cd "$ctx/services/$svc" && go mod download && go build -trimpath -ldflags "-s -w" -o "$OUT/$svc" "./cmd/$svc"); then
		echo "FAIL $svc: GOWORK=off build from services/$svc" >&2
		failed+=("$svc")
		continue
	fi
	# The runtime image has no libc: insist on a static, trimmed, stripped
	# binary. (-trimpath keeps -ldflags out of the build info, so stripping
	# is checked on the symbol table itself.)
	info="$(go version -m "$OUT/$svc")"
	for want in "CGO_ENABLED=0" "-trimpath=true"; do
		if ! grep -qF -- "$want" <<<"$info"; then
			echo "FAIL $svc: binary build info lacks $want" >&2
			failed+=("$svc")
			continue 2
		fi
	done
	syms="$(go tool nm "$OUT/$svc" 2>&1 || true)"
	if ! grep -q "no symbols" <<<"$syms"; then
		echo "FAIL $svc: binary is not stripped (-ldflags \"-s -w\")" >&2
		failed+=("$svc")
		continue
	fi
	echo "ok   $svc ($(du -h "$OUT/$svc" | cut -f1), static, stripped)"
done

ctx="$SCRATCH/ctx-healthcheck"
copy_tree deploy/healthcheck "$ctx"
if (cd "$ctx/deploy/healthcheck" && go build -trimpath -ldflags "-s -w" -o "$OUT/healthcheck" .) &&
	(cd "$ROOT/deploy/healthcheck" && go vet ./... && go test -count=1 ./...); then
	echo "ok   healthcheck"
else
	echo "FAIL healthcheck" >&2
	failed+=(healthcheck)
fi

if [[ ${#failed[@]} -gt 0 ]]; then
	echo "deploy build check: ${#failed[@]} failed: ${failed[*]}" >&2
	exit 1
fi
echo "deploy build check: all ${#SERVICES[@]} services build with GOWORK=off as the Dockerfile builds them"
