#!/usr/bin/env bash
# Wire benchmark (docs/performance.md): lakecube beside a local PostgreSQL 15 holding the same
# rows, SELECT 1 and catalog round trips, whole-table streaming to psycopg 3, pgjdbc and ADBC and
# COPY out, one run, ratios printed. Installs what it needs (Debian's postgresql-15, pgjdbc, a
# JDK; psycopg, the ADBC PostgreSQL driver and pyarrow from PyPI),
# builds lakecube in release mode and generates the demo lake if absent.
# Usage: benches/wire.sh [--lake DIR] [--pings N] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
pkgs=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || pkgs+=(postgresql-15)
[ -f /usr/share/java/postgresql.jar ] || pkgs+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
if [ ${#pkgs[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
python3 -c 'import psycopg' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1'
python3 -c 'import adbc_driver_postgresql.dbapi, pyarrow' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check adbc-driver-postgresql pyarrow
cargo build --release --locked --quiet
[ -d data/demo/traffic ] || ./target/release/lakecube generate --lake data/demo --preset demo
python3 benches/wire/run.py "$@"
