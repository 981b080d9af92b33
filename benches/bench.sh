#!/usr/bin/env bash
# The end-to-end benchmark (benches/e2e.rs; docs/performance.md): lakecube beside DuckDB and
# PostgreSQL 15 on the same generated lake, one run, answers checked across engines.
# Installs what it needs (Debian's postgresql-15, PyPI's duckdb), builds lakecube in release
# mode, generates the lake if absent, then runs the queries of benches/queries/.
# Usage: benches/bench.sh [--preset sf1] [--runs N] [--warmup N] [--seconds S] [--no-postgres]
#   --preset   tiny | demo | sf1 | sf10 (default sf1: 100 stores × 10 departments × 3 years)
#   --runs     timed runs per query and engine (default 10), after --warmup runs (default 2)
#   --seconds  length of each concurrency measurement (default 10)
#   --no-postgres  DuckDB as the only peer (sf10: PostgreSQL would take hours)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=sf1
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x /usr/lib/postgresql/15/bin/postgres ] || ! command -v psql >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client >/dev/null
fi
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check duckdb
cargo build --release --locked --quiet
lake="data/$preset"
[ -d "$lake/traffic/_delta_log" ] || ./target/release/lakecube generate --lake "$lake" --preset "$preset"
exec cargo bench --locked --bench e2e -- --lake "$lake" --scale "$preset" "${rest[@]}"
