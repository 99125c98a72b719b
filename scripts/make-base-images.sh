#!/usr/bin/env bash
# Makes local TEST STAND-INS for the two base images the Dockerfile names, so that the image can be built from the
# unchanged Dockerfile on machines that cannot reach a container registry:
#
#   docker.io/library/node:24-bookworm-slim        Debian 12 minbase (mmdebstrap, Debian's archive) with the
#                                                 official Node 24 binary that the npm `node` package ships
#                                                 (/usr/local/bin/node), npm from the npm registry, user node (1000)
#   gcr.io/distroless/nodejs24-debian12:nonroot   Debian 12 packages unpacked without a package manager or shell
#                                                 (libc6, libgcc-s1, libstdc++6, libssl3, libgomp1, base-files,
#                                                 netbase, tzdata, the ca-certificates bundle), /nodejs/bin/node,
#                                                 passwd/group with nonroot (65532), USER 65532, /tmp 1777
#
# What differs from the real images (docs/install.md, "Building the image"): no corepack or yarn in the node
# stand-in; the distroless stand-in is unpacked from .debs by this script rather than by distroless' Bazel rules,
# so its file list and licences directory differ; both are single-layer, single-architecture (the host's) and carry
# the label dev.plugboard.base-image-stand-in. Real builds (the release workflow, anyone with registry access) pull
# the real images; this script never replaces an existing image that lacks that label.
#
# Idempotent: the images are kept as archives in ~/.cache/plugboard/images keyed by Node/npm version and this
# script's own hash, and loaded into podman's storage when missing. Prints nothing on success when warm.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
NPM_VERSION="${PLUGBOARD_STANDIN_NPM_VERSION:-11.19.1}"
SUITE=bookworm
MIRROR="${PLUGBOARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${PLUGBOARD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
NODE_IMAGE=docker.io/library/node:24-bookworm-slim
DISTROLESS_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot
LABEL=dev.plugboard.base-image-stand-in

log() { echo "make-base-images: $*" >&2; }
die() { log "$*"; exit 1; }

NODE_BIN="$ROOT/node_modules/node/bin/node"
[ -x "$NODE_BIN" ] || die "$NODE_BIN is missing: run npm ci first (the npm 'node' package ships the Node 24 binary)"
NODE_VERSION="$("$NODE_BIN" --version)"
case "$NODE_VERSION" in v24.*) ;; *) die "$NODE_BIN is $NODE_VERSION, not Node 24" ;; esac
ARCH="$(dpkg --print-architecture)"
KEY="node-$NODE_VERSION-npm-$NPM_VERSION-$ARCH-$(sha256sum "$0" | cut -c1-12)"
STORE="$CACHE/images/$KEY"

# A real image (pulled from a registry) is never replaced: only stand-ins (with the label) or nothing.
present() {
  podman image exists "$1" || return 1
  local label
  label="$(podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null || true)"
  [ -z "$label" ] && return 0 # the real image
  [ "$label" = "$KEY" ]
}

if present "$NODE_IMAGE" && present "$DISTROLESS_IMAGE"; then exit 0; fi
command -v podman >/dev/null || die "podman is missing: run scripts/install-container-tools.sh (root) first"
[ "$(id -u)" -eq 0 ] || die "making the base images needs root (mmdebstrap --mode=root and dpkg-deb ownership)"
mkdir -p "$STORE"

load() { # image archive
  local image=$1 archive=$2
  present "$image" && return 0
  podman load -q -i "$archive" >/dev/null || die "podman load -i $archive failed"
  present "$image" || die "loading $archive did not give $image"
}

# Debian's own "slim" rules (as in the debian:*-slim images): no manuals, locales or docs besides copyright files.
SLIM_DPKG=(
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
)
SOURCES=(
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main"
)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/plugboard-base-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [ ! -s "$STORE/npm-$NPM_VERSION.tgz" ]; then
  log "fetching npm $NPM_VERSION from the npm registry"
  (cd "$WORK" && npm pack --silent "npm@$NPM_VERSION" >/dev/null) || die "npm pack npm@$NPM_VERSION failed"
  mv "$WORK/npm-$NPM_VERSION.tgz" "$STORE/"
fi

if [ ! -s "$STORE/node.tar" ]; then
  log "making $NODE_IMAGE stand-in: Debian $SUITE minbase + Node $NODE_VERSION + npm $NPM_VERSION (cold: ~1 min)"
  mkdir -p "$WORK/node"
  cp "$NODE_BIN" "$WORK/node/node"
  tar -xzf "$STORE/npm-$NPM_VERSION.tgz" -C "$WORK/node"
  # The layout of the official image: /usr/local/bin/{node,npm,npx}, npm in /usr/local/lib/node_modules/npm.
  mmdebstrap --quiet --mode=root --variant=minbase "${SLIM_DPKG[@]}" \
    --customize-hook="copy-in '$WORK/node/node' /usr/local/bin" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules\" && cp -a '$WORK/node/package' \"\$1/usr/local/lib/node_modules/npm\"" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
    --customize-hook='chroot "$1" groupadd --gid 1000 node' \
    --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
    "$SUITE" "$WORK/node-rootfs.tar" "${SOURCES[@]}" || die "mmdebstrap failed (is $MIRROR reachable?)"
  podman rmi -f "$NODE_IMAGE" >/dev/null 2>&1 || true
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${NODE_VERSION#v}" \
    --change 'CMD ["node"]' \
    --change "LABEL $LABEL=$KEY" \
    "$WORK/node-rootfs.tar" "$NODE_IMAGE" >/dev/null
  podman save -q --format docker-archive -o "$STORE/node.tar.part" "$NODE_IMAGE"
  mv "$STORE/node.tar.part" "$STORE/node.tar"
fi
load "$NODE_IMAGE" "$STORE/node.tar"

if [ ! -s "$STORE/distroless.tar" ]; then
  log "making $DISTROLESS_IMAGE stand-in: Debian $SUITE packages unpacked + Node $NODE_VERSION"
  d="$WORK/distroless"; debs="$WORK/debs"; mkdir -p "$d" "$debs"
  # The same package list as distroless' cc-debian12 base (its nodejs images add only Node itself). They are
  # unpacked, not installed: no dpkg database, no maintainer scripts, no shell.
  pkgs=(base-files netbase tzdata ca-certificates libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 gcc-12-base)
  (cd "$debs" && apt-get download -q "${pkgs[@]}" >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$debs" && apt-get download -q "${pkgs[@]}" >/dev/null); } \
    || die "apt-get download ${pkgs[*]} failed"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$d"; done
  # ca-certificates ships the certificates; its postinst (not run here) would bundle them, as this does.
  mkdir -p "$d/etc/ssl/certs"
  find "$d/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat >"$d/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$d/usr/share/doc"/*/changelog* "$d/usr/share/man" "$d/usr/share/lintian" "$d/usr/share/locale" \
    "$d/usr/bin" "$d/usr/sbin" "$d/sbin" "$d/bin"
  cat >"$d/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$d/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$d/etc/nsswitch.conf"
  mkdir -p "$d/nodejs/bin" "$d/home/nonroot" "$d/root" "$d/tmp"
  cp "$NODE_BIN" "$d/nodejs/bin/node"
  chown 65532:65532 "$d/home/nonroot"; chmod 0700 "$d/home/nonroot" "$d/root"; chmod 1777 "$d/tmp"
  tar --numeric-owner -C "$d" -cf "$WORK/distroless-rootfs.tar" .
  podman rmi -f "$DISTROLESS_IMAGE" >/dev/null 2>&1 || true
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENTRYPOINT ["/nodejs/bin/node"]' \
    --change "LABEL $LABEL=$KEY" \
    "$WORK/distroless-rootfs.tar" "$DISTROLESS_IMAGE" >/dev/null
  podman save -q --format docker-archive -o "$STORE/distroless.tar.part" "$DISTROLESS_IMAGE"
  mv "$STORE/distroless.tar.part" "$STORE/distroless.tar"
fi
load "$DISTROLESS_IMAGE" "$STORE/distroless.tar"
log "stand-ins ready: $NODE_IMAGE, $DISTROLESS_IMAGE ($KEY)"
