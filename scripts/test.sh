#!/usr/bin/env bash
# Runs lakecube's whole test suite, installing what the tests need first:
#   - psql (Debian package postgresql-client), the real client the server tests drive;
#   - moto (PyPI, moto[server]), the local S3-compatible server the S3 tests start;
#   - the client drivers tests/clients.rs runs against a real server: pgjdbc (Debian's
#     libpostgresql-jdbc-java, compiled against with the machine's javac), psycopg 3, asyncpg,
#     SQLAlchemy 2 and pandas (PyPI), the ADBC PostgreSQL driver, pyarrow, polars and
#     connectorx (PyPI, the COPY readers), psqlODBC under unixODBC (Debian's odbc-postgresql
#     and unixodbc) driven through pyodbc (PyPI), pgcli (PyPI), node-postgres and pg-cursor
#     (npm, tests/clients/node);
#   - openssl, which makes the TLS tests' self-signed certificates.
#   - PostgreSQL 15 (Debian package postgresql-15): the ingest tests start a throwaway cluster
#     to read a PostgreSQL source from.
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

apt_packages=()
[ -f /usr/share/java/postgresql.jar ] || apt_packages+=(libpostgresql-jdbc-java)
[ -x /usr/lib/postgresql/15/bin/initdb ] || apt_packages+=(postgresql-15)
command -v javac >/dev/null 2>&1 || apt_packages+=(default-jdk-headless)
command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs npm)
grep -qs '^\[PostgreSQL Unicode\]' /etc/odbcinst.ini || apt_packages+=(odbc-postgresql unixodbc)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing ${apt_packages[*]}…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if ! python3 -c 'import psycopg, asyncpg, sqlalchemy, pandas' >/dev/null 2>&1; then
  echo "installing psycopg 3, asyncpg, SQLAlchemy 2 and pandas (client tests)…"
  python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1' 'asyncpg>=0.29' 'sqlalchemy>=2' pandas
fi

if ! python3 -c 'import adbc_driver_postgresql.dbapi, pyarrow, polars, connectorx' >/dev/null 2>&1; then
  echo "installing the ADBC PostgreSQL driver, pyarrow, polars and connectorx (COPY client tests)…"
  python3 -m pip install --quiet --disable-pip-version-check adbc-driver-postgresql pyarrow polars connectorx
fi

if ! python3 -c 'import pyodbc, pgcli.pgexecute' >/dev/null 2>&1; then
  echo "installing pyodbc and pgcli (ODBC and pgcli client tests)…"
  python3 -m pip install --quiet --disable-pip-version-check pyodbc pgcli
fi

if [ ! -d tests/clients/node/node_modules/pg-cursor ]; then
  echo "installing node-postgres (client tests)…"
  (cd tests/clients/node && npm ci --silent --no-audit --no-fund)
fi

# A one-off build gains nothing from incremental compilation, whose caches would take another
# few hundred MB; set CARGO_INCREMENTAL=1 to keep them between local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$target_dir"
free_mb() { df -Pm "$target_dir" | awk 'NR==2 {print $4}'; }
echo "toolchain: $(cargo --version); psql: $(psql --version)"
# The cold debug build takes about 2.7 GB under the target dir, the tests' scratch lakes a few
# hundred MB more: say so up front rather than fail mid-link with "No space left on device".
echo "target dir: $target_dir ($(free_mb) MB free)"
if [ "$(free_mb)" -lt 4000 ]; then
  echo "warning: less than 4 GB free for the target dir; the build may run out of disk" >&2
  echo "hint: free some space, or point CARGO_TARGET_DIR at a bigger disk" >&2
fi
log=$(mktemp)
set +e
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# One closing line for the whole suite: every runner's passed and failed counts added up.
passed=$(grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
failed=$(grep -hoE '[0-9]+ passed; [0-9]+ failed' "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo
echo "lakecube: ${passed:-0} passed, ${failed:-0} failed ($(free_mb) MB free for the target dir)"
exit "$status"
