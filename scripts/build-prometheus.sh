#!/usr/bin/env bash
# Builds prometheus and promtool from the github.com/prometheus/prometheus Go module at a pinned version (module
# v0.3XX.Y is Prometheus 3.XX.Y), the way build-control-plane.sh builds the control plane: a wrapper module,
# GOFLAGS=-mod=mod, cached outside the repo keyed by version. Next to them, from the Prometheus Operator's Go module
# (downloaded, not built): its ServiceMonitor and PrometheusRule CRDs, which the cluster suite installs, and the
# golden files of its configuration generator's tests that test/support/prometheus-operator.ts is checked against.
# Prints the directory. Idempotent: a second run finds everything and exits at once.
#
# Build tags: `remove_all_sd,enable_kubernetes_sd` keeps only the service discoveries the suite uses (Kubernetes,
# plus file, static and HTTP, which are always in; Prometheus' README documents the tags), so the cloud SDKs (AWS,
# Azure, GCE, ...) are not compiled. Without `builtinassets` the React UI is not embedded (web/ui/ui.go serves it
# from a directory that is not there): the HTTP API, which is all the tests read, is complete; the browser UI pages
# answer 500 ("Error opening React index.html"). `netgo` as upstream.
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CACHE="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
# v0.316.0 -> 3.16.0
VERSION="$(echo "$PROMETHEUS_MODULE_VERSION" | sed -E 's/^v0\.3([0-9]+)\.([0-9]+).*/3.\1.\2/')"
BIN="$CACHE/bin/prometheus-$VERSION-operator-$PROMETHEUS_OPERATOR_VERSION"
OPERATOR_FILES=(
  example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
  example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
  pkg/prometheus/testdata/SettingHonorLabels.golden
  pkg/prometheus/testdata/monitorObjectWithoutScrapeClass.golden
  pkg/prometheus/testdata/namespaces_from_MatchNames_are_returned_instead_of_the_current_namespace.golden
  LICENSE
)
WORK="$CACHE/build/prometheus-$$"

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" GOCACHE="${GOCACHE:-$CACHE/gocache}"
log() { echo "build-prometheus: $*" >&2; }

have_all() {
  [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ] || return 1
  for f in "${OPERATOR_FILES[@]}"; do [ -f "$BIN/prometheus-operator/$f" ] || return 1; done
}
if have_all; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "'go' not found; prometheus and promtool are built from their Go module"; exit 1; }
mkdir -p "$BIN" "$WORK"
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$BIN/prometheus" ] || [ ! -x "$BIN/promtool" ]; then
  log "building prometheus and promtool $VERSION (module $PROMETHEUS_MODULE_VERSION; cold: ~6 min on 2 cores)"
  (
    cd "$WORK"
    go mod init plugboard.dev/prometheus >/dev/null 2>&1
    go get "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" >&2
    ld="-s -w -X github.com/prometheus/common/version.Version=$VERSION"
    ld="$ld -X github.com/prometheus/common/version.Revision=$PROMETHEUS_MODULE_VERSION"
    ld="$ld -X github.com/prometheus/common/version.Branch=HEAD"
    go build -p 2 -trimpath -tags netgo,remove_all_sd,enable_kubernetes_sd -ldflags "$ld" -o "$WORK/out/" \
      github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
  )
  mv "$WORK/out/prometheus" "$WORK/out/promtool" "$BIN/"
fi

log "fetching the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION module (CRDs, generator golden files)"
src=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -n "$src" ] || { log "could not download github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"; exit 1; }
for f in "${OPERATOR_FILES[@]}"; do
  mkdir -p "$(dirname "$BIN/prometheus-operator/$f")"
  cp "$src/$f" "$BIN/prometheus-operator/$f"
  chmod u+w "$BIN/prometheus-operator/$f"
done
echo "$BIN"
