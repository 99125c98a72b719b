#!/usr/bin/env bash
# Installs schemathesis (from PyPI) into a cached virtualenv outside the repository, for
# test/reliability/schemathesis.test.ts. Idempotent: a working install of the pinned version is kept.
# Prints the path of the schemathesis executable on its last line of stdout; fails with the reason otherwise.
set -euo pipefail

VERSION="${PLUGBOARD_SCHEMATHESIS_VERSION:-4.32.5}"
CACHE="${PLUGBOARD_CACHE:-$HOME/.cache/plugboard}"
VENV="$CACHE/venv"
ST="$VENV/bin/schemathesis"
STAMP="$VENV/.schemathesis-$VERSION"

if [ -x "$ST" ] && [ -f "$STAMP" ] && "$ST" --version >/dev/null 2>&1; then
  echo "$ST"
  exit 0
fi

PYTHON="${PLUGBOARD_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  # the first that runs and is new enough (pyenv shims exist for versions that are not selected)
  for p in python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    if command -v "$p" >/dev/null 2>&1 &&
      "$p" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)' >/dev/null 2>&1; then
      PYTHON="$(command -v "$p")"
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "install-schemathesis: no working Python 3.9+ with the venv module found; install one or set PLUGBOARD_PYTHON." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
  echo "install-schemathesis: $PYTHON is $("$PYTHON" --version 2>&1); schemathesis needs Python 3.9+." >&2
  exit 1
fi

mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    echo "install-schemathesis: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)." >&2
    rm -rf "$VENV"
    exit 1
  fi
fi
echo "install-schemathesis: installing schemathesis==$VERSION from PyPI into $VENV (one time)..." >&2
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "schemathesis==$VERSION" >&2; then
  echo "install-schemathesis: pip could not install schemathesis==$VERSION (is PyPI reachable? proxy settings?)." >&2
  exit 1
fi
if ! "$ST" --version >/dev/null 2>&1; then
  echo "install-schemathesis: $ST does not run after installing; see the pip output above." >&2
  exit 1
fi
rm -f "$VENV"/.schemathesis-*
touch "$STAMP"
echo "install-schemathesis: $("$ST" --version 2>&1 | head -1)" >&2
echo "$ST"
