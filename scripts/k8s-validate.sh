#!/usr/bin/env bash
# Renders every kustomize overlay under k8s/overlays with kustomize v5.8.2 and
# validates every object offline: each document is strictly decoded into its
# Kubernetes API type (or the Prometheus Operator CRD type), or checked
# against KEDA's own CRD schema (ScaledObject; the CRDs come from the
# github.com/kedacore/keda/v2 module, fetched through the Go module proxy),
# unknown or duplicate fields are errors, and an unknown kind fails; then the policy
# checks run (probes, securityContext, references, network policy reach) and
# the env-drift check against the services' own configuration code.
#
#   scripts/k8s-validate.sh               render to .data/k8s and validate
#   scripts/k8s-validate.sh --render-only render only (what `make k8s` prints)
#
# K8S_OUT=dir changes where the rendered YAML goes. kustomize is taken from
# KUSTOMIZE, bin/ (make's install), PATH or GOPATH/bin when it is v5.8.2, and
# installed with `go install` otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WANT=v5.8.2
OUT="${K8S_OUT:-$ROOT/.data/k8s}"
mode="${1:-validate}"

find_kustomize() {
	local c
	for c in "${KUSTOMIZE:-}" "$ROOT/bin/kustomize" "$(command -v kustomize || true)" "$(go env GOPATH)/bin/kustomize"; do
		[[ -n "$c" && -x "$c" ]] || continue
		if [[ "$("$c" version 2>/dev/null)" == "$WANT" ]]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

if ! KUSTOMIZE_BIN="$(find_kustomize)"; then
	echo "installing kustomize $WANT" >&2
	GOWORK=off GOFLAGS= go install "sigs.k8s.io/kustomize/kustomize/v5@$WANT"
	KUSTOMIZE_BIN="$(find_kustomize)" || { echo "kustomize $WANT not usable after install" >&2; exit 1; }
fi

mkdir -p "$OUT"
rendered=0
for dir in "$ROOT"/k8s/overlays/*/; do
	name="$(basename "$dir")"
	[[ -f "$dir/kustomization.yaml" ]] || continue
	"$KUSTOMIZE_BIN" build "$dir" >"$OUT/$name.yaml.tmp"
	mv "$OUT/$name.yaml.tmp" "$OUT/$name.yaml"
	echo "rendered k8s/overlays/$name -> ${OUT#"$ROOT"/}/$name.yaml ($(grep -c '^kind:' "$OUT/$name.yaml") objects)"
	rendered=$((rendered + 1))
done
if [[ $rendered -eq 0 ]]; then
	echo "no overlays under k8s/overlays" >&2
	exit 1
fi

if [[ "$mode" == "--render-only" ]]; then
	exit 0
fi

# KEDA's CRDs, from the version of its module the validator pins
# (test/deploy/crdschema_test.go, kedaModule).
KEDA_MODULE="$(sed -n 's/^const kedaModule = "\(.*\)"$/\1/p' "$ROOT/test/deploy/crdschema_test.go")"
[[ -n "$KEDA_MODULE" ]] || { echo "kedaModule not found in test/deploy/crdschema_test.go" >&2; exit 1; }
KEDA_TMP="$(mktemp -d)"
trap 'rm -rf "$KEDA_TMP"' EXIT
KEDA_DIR="$(cd "$KEDA_TMP" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$KEDA_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$KEDA_DIR/config/crd/bases" ]] || { echo "no CRDs in $KEDA_MODULE ($KEDA_DIR)" >&2; exit 1; }
echo "KEDA CRDs from $KEDA_MODULE"

cd "$ROOT/test"
LR_K8S_RENDERED="$OUT" LR_KEDA_CRDS="$KEDA_DIR/config/crd/bases" KUSTOMIZE="$KUSTOMIZE_BIN" go test -count=1 ./deploy
