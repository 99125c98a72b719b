#!/usr/bin/env bash
# Builds Plugboard's image from the Dockerfile as written, with podman (Debian's package), and prints its reference
# as the last line of stdout. Installs podman first when missing (root), and makes the base-image stand-ins when
# the real base images are not in podman's storage (scripts/make-base-images.sh).
#
#   PLUGBOARD_IMAGE     the tag to build (default localhost/plugboard:dev)
#   PLUGBOARD_EXTRA_CA  PEM file of extra CA certificates for the build's `npm ci` (a TLS-intercepting proxy);
#                       default: the machine's bundle /etc/ssl/certs/ca-certificates.crt when it exists, so a
#                       proxy this machine trusts is trusted by the build too. Passed as a build secret: it is
#                       never stored in a layer. Set it to an empty string to pass none.
#
# Warm (nothing changed): podman's layer cache makes it a few seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${PLUGBOARD_IMAGE:-localhost/plugboard:dev}"
EXTRA_CA="${PLUGBOARD_EXTRA_CA-/etc/ssl/certs/ca-certificates.crt}"
log() { echo "build-image: $*" >&2; }

bash "$ROOT/scripts/install-container-tools.sh"
# shellcheck source=scripts/podman-env.sh
source "$ROOT/scripts/podman-env.sh"
bash "$ROOT/scripts/make-base-images.sh"

args=(build --pull=never --network=host --file "$ROOT/Dockerfile" --tag "$IMAGE")
if [ -n "$EXTRA_CA" ]; then
  [ -r "$EXTRA_CA" ] || { log "PLUGBOARD_EXTRA_CA=$EXTRA_CA is not a readable file"; exit 1; }
  args+=(--secret "id=extra-ca,src=$EXTRA_CA")
fi
started=$(date +%s)
if ! out="$(podman "${args[@]}" "$ROOT" 2>&1)"; then
  echo "$out" | tail -40 >&2
  log "podman build failed (last lines above)"
  exit 1
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "$IMAGE built in $(($(date +%s) - started)) s: $((size / 1000000)) MB ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12))"
echo "$IMAGE"
