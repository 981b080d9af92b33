#!/usr/bin/env bash
# Runs lakecube's whole test suite, installing what the tests need first:
#   - psql (Debian package postgresql-client), the real client the server tests drive;
#   - moto (PyPI, moto[server]), the local S3-compatible server the S3 tests start.
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v psql >/dev/null 2>&1; then
  echo "installing psql (postgresql-client)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
fi

if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
  echo "installing moto[server] (local S3 for the S3 tests)…"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi

echo "toolchain: $(cargo --version); psql: $(psql --version)"
exec cargo test --locked "$@"
