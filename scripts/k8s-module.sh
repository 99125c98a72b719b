#!/usr/bin/env bash
# Sourced by build-control-plane.sh and build-cluster.sh: one recipe for the wrapper Go module that builds
# Kubernetes components from k8s.io/kubernetes at a release tag, so every component shares one Go build cache.
#
# k8s_module DIR VERSION: makes DIR a module that requires k8s.io/kubernetes@VERSION with every staging module
# (required as v0.0.0 and replaced by ./staging upstream) pointed at its published v0.X.Y tag.
# k8s_ldflags VERSION: the -ldflags that stamp the version the way upstream's build does (else /version says
# v0.0.0-master, and helm's kubeVersion checks and emulation-version logic misbehave).
k8s_module() {
  local dir=$1 version=$2 gomod staging m
  rm -rf "$dir"; mkdir -p "$dir"
  (
    cd "$dir"
    go mod init plugboard.dev/controlplane-k8s >/dev/null 2>&1
    go mod edit -go=1.26.0
    gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    staging="v0${version#v1}"
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go mod edit -require="k8s.io/kubernetes@$version"
  )
}

k8s_ldflags() {
  local version=$1 minor p ld="-s -w"
  minor=$(echo "$version" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ld"
}
