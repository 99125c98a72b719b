#!/usr/bin/env bash
# Installs, from Debian's archive, what building and running Plugboard's image needs on this machine:
# podman (the OCI builder and the Docker-compatible API that testcontainers drives), mmdebstrap (the base-image
# stand-ins), and the single-node cluster's runtime: containerd, runc, the CNI plugins, iptables and conntrack.
# Idempotent: when every tool is present it exits at once.
set -euo pipefail

need=()
command -v podman >/dev/null || need+=(podman)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nsenter >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-container-tools: missing ${need[*]} and this system has no apt-get; install them with your package manager." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-container-tools: missing ${need[*]}; installing them needs root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "install-container-tools: installing ${need[*]} from Debian's archive (one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
# Other installs (Chromium) may hold the dpkg lock for a while on a busy machine: wait for it, do not fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's containerd package enables a systemd unit; where systemd runs, the cluster scripts start their own
# containerd with its own socket and state, so the machine's service (if any) is left as it is.
echo "install-container-tools: $(podman --version), containerd $(containerd --version | awk '{print $3}')" >&2
