#!/usr/bin/env bash
# The Python venv the end-to-end tests use: target/py-venv with py-spiffe and the grpcio it was
# tried with (tests/e2e/pyspiffe.rs), and authlib with requests (tests/e2e/oauth2.rs: a client
# library nobody here wrote, against the RFC 8693 endpoint), pinned, from PyPI. Created only when missing or
# holding other versions; built beside the final path and renamed into place, so a failed
# install never leaves a venv that looks ready. Without python3 or PyPI it says so and exits 0:
# the test then fails under CI=true and is skipped with a notice otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-venv
pins=(spiffe==0.3.2 grpcio==1.85.3 authlib==1.9.6 requests==2.34.2)

have() {
  "$venv/bin/python" - "${pins[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PY
}

if [ -x "$venv/bin/python" ] && have; then
  exit 0
fi
if ! command -v python3 >/dev/null; then
  echo "scripts/py-venv.sh: python3 is missing; the py-spiffe test cannot run" >&2
  exit 0
fi
mkdir -p target
tmp="$venv.tmp.$$"
rm -rf "$tmp"
if python3 -m venv "$tmp" &&
  "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"; then
  rm -rf "$venv"
  mv "$tmp" "$venv"
  # A venv records its own path; the rename keeps the interpreter working (bin/python is a
  # symlink), and scripts are only run as `$venv/bin/python script.py`.
  echo "scripts/py-venv.sh: $venv ready (${pins[*]})" >&2
else
  rm -rf "$tmp"
  echo "scripts/py-venv.sh: could not create $venv (python3 -m venv, pip install ${pins[*]})" >&2
fi
