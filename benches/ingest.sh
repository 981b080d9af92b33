#!/usr/bin/env bash
# Ingest throughput and peak memory beside DuckDB's read_csv (benches/ingest.py): builds
# lakecube in release mode, installs DuckDB from PyPI if absent, runs both on the same files.
# Figures, not pass/fail: see docs/performance.md.
# Usage: benches/ingest.sh [--rows N]   (default 10,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check duckdb
exec python3 benches/ingest.py "$@"
