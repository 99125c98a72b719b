#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (test/ui/*.test.ts drive it with playwright-core).
# No browser is downloaded from anywhere but the distribution's package mirrors.
set -euo pipefail

CHROMIUM="${PLUGBOARD_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: $CHROMIUM is missing and this system has no apt-get." >&2
  echo "Install Chromium with your package manager, or set PLUGBOARD_CHROMIUM to its path." >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium: $CHROMIUM is missing and installing it needs root." >&2
  echo "Run: sudo apt-get update && sudo apt-get install -y chromium" >&2
  exit 1
fi

echo "install-chromium: installing Debian's chromium package (one time)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
  echo "install-chromium: apt-get finished but $CHROMIUM does not exist." >&2
  exit 1
fi
echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium installed)" >&2
