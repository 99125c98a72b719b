#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, etcd, helm) from the Go module proxy at pinned versions,
# the way envtest ships its binaries, and caches them outside the repo keyed by version.
# Idempotent: a second run finds the binaries and exits at once.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
WORK="$CACHE/build"

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" GOCACHE="${GOCACHE:-$CACHE/gocache}"

if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] && [ -x "$BIN/helm" ]; then
  echo "$BIN"; exit 0
fi
command -v go >/dev/null || { echo "build-control-plane: 'go' not found; the test control plane is built from Go modules" >&2; exit 1; }
mkdir -p "$BIN" "$WORK"
log() { echo "build-control-plane: $*" >&2; }

if [ ! -x "$BIN/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (cold, with etcd and helm: ~7 min on 2 cores)"
  d="$WORK/k8s-$K8S_VERSION"
  # shellcheck source=scripts/k8s-module.sh
  source "$SCRIPTS/k8s-module.sh"
  k8s_module "$d" "$K8S_VERSION"
  (cd "$d" && go build -p 2 -trimpath -tags notest -ldflags "$(k8s_ldflags "$K8S_VERSION")" \
    -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
fi

if [ ! -x "$BIN/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  d="$WORK/etcd-$ETCD_VERSION"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init plugboard.dev/controlplane-etcd >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go build -p 2 -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

if [ ! -x "$BIN/helm" ]; then
  log "building helm $HELM_VERSION"
  major=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v); minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  d="$WORK/helm-$HELM_VERSION"; rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init plugboard.dev/controlplane-helm >/dev/null 2>&1
  go get "helm.sh/helm/v3@$HELM_VERSION" >&2
  ld="-s -w"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld="$ld -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
  done
  go build -p 2 -trimpath -ldflags "$ld" -o "$BIN/helm" helm.sh/helm/v3/cmd/helm
fi
rm -rf "$WORK"
echo "$BIN"
