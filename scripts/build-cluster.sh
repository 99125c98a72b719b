#!/usr/bin/env bash
# Builds what the single-node cluster needs besides the control plane (scripts/build-control-plane.sh):
# kubelet, kube-controller-manager, kube-scheduler, kube-proxy and kubectl from the same k8s.io/kubernetes wrapper
# module as kube-apiserver (so the Go build cache is shared: a few minutes after the first), CoreDNS from its Go
# module with the plugins a cluster DNS needs, and the pause image's binary from the pause.c that ships in the
# k8s.io/kubernetes module (built as upstream does: gcc -static). Cached in ~/.cache/plugboard keyed by version;
# prints the directory. Idempotent: a second run finds the binaries and exits at once.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
PAUSE_VERSION=3.10.2 # build/pause/Makefile's TAG in k8s.io/kubernetes v1.36
CACHE="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
BIN="$CACHE/bin/cluster-k8s-$K8S_VERSION-coredns-$COREDNS_VERSION"
WORK="$CACHE/build/cluster-$$"
K8S_CMDS=(kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" GOCACHE="${GOCACHE:-$CACHE/gocache}"
log() { echo "build-cluster: $*" >&2; }

missing=()
for c in "${K8S_CMDS[@]}" coredns pause; do [ -x "$BIN/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "'go' not found; the cluster's components are built from Go modules"; exit 1; }
mkdir -p "$BIN" "$WORK"
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=scripts/k8s-module.sh
source "$SCRIPTS/k8s-module.sh"

need_k8s=()
for c in "${K8S_CMDS[@]}"; do [ -x "$BIN/$c" ] || need_k8s+=("k8s.io/kubernetes/cmd/$c"); done
if [ ${#need_k8s[@]} -gt 0 ]; then
  log "building ${need_k8s[*]##*/} $K8S_VERSION (cold after kube-apiserver: ~5 min on 2 cores)"
  k8s_module "$WORK/k8s" "$K8S_VERSION"
  (cd "$WORK/k8s" && go build -p 2 -trimpath -tags notest -ldflags "$(k8s_ldflags "$K8S_VERSION")" \
    -o "$WORK/out/" "${need_k8s[@]}")
  for p in "${need_k8s[@]}"; do mv "$WORK/out/${p##*/}" "$BIN/"; done
fi

if [ ! -x "$BIN/coredns" ]; then
  log "building coredns $COREDNS_VERSION"
  d="$WORK/coredns"; mkdir -p "$d"
  # CoreDNS' documented way to choose plugins at build time: a main that sets dnsserver.Directives (in the order
  # of CoreDNS' plugin.cfg) and imports those plugins. These are what a cluster DNS uses (kubeadm's Corefile,
  # without forward and loop: the cluster's namespace has no upstream resolver).
  cat >"$d/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "prometheus", "errors", "log", "loadbalance", "cache", "kubernetes",
	}
}

func main() { coremain.Run() }
GO
  (cd "$d" && go mod init plugboard.dev/cluster-coredns >/dev/null 2>&1 && go mod edit -go=1.26.0 \
    && go get "github.com/coredns/coredns@$COREDNS_VERSION" >&2 \
    && go build -p 2 -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
      -o "$BIN/coredns" .)
fi

if [ ! -x "$BIN/pause" ]; then
  log "building pause $PAUSE_VERSION from k8s.io/kubernetes $K8S_VERSION build/pause/linux/pause.c"
  command -v gcc >/dev/null || { log "'gcc' not found; the pause binary is built from pause.c"; exit 1; }
  src=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-plugboard" -o "$BIN/pause" "$src/build/pause/linux/pause.c"
fi
echo "$BIN"
