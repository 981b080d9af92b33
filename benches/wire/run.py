"""Wire benchmark: lakecube beside a local PostgreSQL 15 holding the same rows, measured in the
same run with the same clients (psycopg 3, pgjdbc, the ADBC PostgreSQL driver):
  - `SELECT 1` round trip, p50 and p95 over many runs (one client, one connection), and the
    same for a catalog query of the kind a driver or BI tool sends while browsing;
  - the two servers take turns: each of the --runs rounds measures everything once on each
    (pings split over the rounds and pooled, rates the median of the rounds), so that a slow
    spell of a shared machine falls on both;
  - rows/s streaming the whole `lake.traffic` of a lake (a named cursor for psycopg, text and
    binary; setFetchSize for pgjdbc), median of several runs;
  - MB/s (and rows/s) of `COPY (SELECT …) TO STDOUT` of the same table through psycopg's
    cursor.copy(), text and binary, median of several runs;
  - rows/s reading the same table into an Arrow table through ADBC (`fetch_arrow_table`,
    which the driver runs as a binary COPY), median of several runs.
Prints a Markdown table with lakecube/PostgreSQL ratios and writes a JSON file of the figures
under benches/results/. Figures, not pass/fail: see docs/performance.md.
Usage: python3 benches/wire/run.py [--lake data/demo] [--pings 2000] [--runs 3]"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from pglocal import ROOT, Lakecube, Postgres  # noqa: E402

COLUMNS = "store_id, department_id, ts, footfall, transactions, revenue, units, month"
JDBC_JAR = "/usr/share/java/postgresql.jar"
# What psql's \dt asks, and most tools' table lists are like it: a join of two catalogs.
CATALOG_QUERY = ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relkind IN ('r', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")


def load_postgres(lc: Lakecube, pg: Postgres) -> int:
    """Copies lake.traffic, read from lakecube, into a PostgreSQL table of the same types."""
    with pg.connect(autocommit=True) as dst:
        dst.execute("DROP TABLE IF EXISTS traffic")
        dst.execute("CREATE TABLE traffic (store_id int NOT NULL, department_id int NOT NULL, ts timestamp NOT NULL, "
                    "footfall int NOT NULL, transactions int NOT NULL, revenue numeric(14,2) NOT NULL, "
                    "units int NOT NULL, month date NOT NULL)")
        n = 0
        with lc.connect() as src, src.cursor(name="load", binary=True) as cur, \
                dst.cursor().copy(f"COPY traffic ({COLUMNS}) FROM STDIN") as copy:
            cur.itersize = 50_000
            cur.execute(f"SELECT {COLUMNS} FROM lake.traffic")
            for row in cur:
                copy.write_row(row)
                n += 1
        dst.execute("CREATE INDEX ON traffic (ts)")
        dst.execute("VACUUM ANALYZE traffic")
    return n


def check_same(lc: Lakecube, pg: Postgres) -> tuple:
    q = "SELECT count(*), sum(footfall), sum(revenue), min(ts), max(ts) FROM {}"
    with lc.connect() as a, pg.connect() as b:
        x = a.execute(q.format("lake.traffic")).fetchone()
        y = b.execute(q.format("traffic")).fetchone()
    if x != y:
        sys.exit(f"the two servers do not hold the same rows: lakecube {x}, PostgreSQL {y}")
    return x


def pings(connect, n: int, sql: str = "SELECT 1") -> list:
    with connect(autocommit=True) as c:
        cur = c.cursor()
        for _ in range(max(50, n // 10)):
            cur.execute(sql).fetchall()
        out = []
        for _ in range(n):
            t = time.perf_counter_ns()
            cur.execute(sql).fetchall()
            out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def stream(connect, table: str, binary: bool, runs: int) -> tuple:
    rates, rows = [], 0
    for _ in range(runs):
        with connect() as c, c.cursor(name="stream", binary=binary) as cur:
            cur.itersize = 10_000
            t = time.perf_counter()
            cur.execute(f"SELECT {COLUMNS} FROM {table}")
            rows = sum(1 for _ in cur)
            rates.append(rows / (time.perf_counter() - t))
    return statistics.median(rates), rows


def copy_out(connect, table: str, binary: bool, runs: int) -> tuple:
    """MB/s and rows/s of `COPY (SELECT …) TO STDOUT` read whole through psycopg's cursor.copy()."""
    mbs, rates, rows = [], [], 0
    fmt = " WITH (FORMAT binary)" if binary else ""
    for _ in range(runs):
        with connect() as c, c.cursor() as cur:
            t = time.perf_counter()
            size = rows = 0
            with cur.copy(f"COPY (SELECT {COLUMNS} FROM {table}) TO STDOUT{fmt}") as copy:
                for chunk in copy:
                    size += len(chunk)
                    rows += 1
            took = time.perf_counter() - t
            mbs.append(size / took / 1e6)
            rates.append(rows / took)
    return statistics.median(mbs), statistics.median(rates), rows


def adbc_read(uri: str, table: str, runs: int) -> tuple:
    """rows/s of a whole-table read into Arrow through the ADBC PostgreSQL driver."""
    import adbc_driver_postgresql.dbapi as adbc
    rates, rows = [], 0
    for _ in range(runs):
        with adbc.connect(uri) as c, c.cursor() as cur:
            t = time.perf_counter()
            cur.execute(f"SELECT {COLUMNS} FROM {table}")
            rows = cur.fetch_arrow_table().num_rows
            rates.append(rows / (time.perf_counter() - t))
    return statistics.median(rates), rows


_JDBC_BUILD = []


def jdbc(port: int, user: str, table: str, pings_n: int, runs: int) -> dict:
    if not _JDBC_BUILD:
        build = tempfile.mkdtemp()
        src = pathlib.Path(__file__).with_name("WireBench.java")
        subprocess.run(["javac", "-cp", JDBC_JAR, "-d", build, str(src)], check=True)
        _JDBC_BUILD.append(build)
    out = subprocess.run(["java", "-cp", f"{JDBC_JAR}:{_JDBC_BUILD[0]}", "WireBench", str(port), user, table, str(pings_n), str(runs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def machine() -> dict:
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return {"machine": True, "cores": os.cpu_count(), "memory_gib": round(mem / 1024 / 1024, 1), "cpu": model,
            "date": datetime.date.today().isoformat()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", default=str(ROOT / "data/demo"))
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    lc = Lakecube(pathlib.Path(args.lake))
    pg = Postgres()
    try:
        t = time.perf_counter()
        n = load_postgres(lc, pg)
        print(f"loaded {n} rows of lake.traffic into PostgreSQL 15 in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        same = check_same(lc, pg)
        # The two servers take turns, one round each per run (--runs), so that a slow spell of
        # the machine falls on both: pings are pooled over the rounds, rates are the median
        # of the rounds.
        engines = [("lakecube", lc.connect, "lake.traffic", lc.port, "lakecube"),
                   ("postgresql", pg.connect, "traffic", pg.port, "postgres")]
        samples = {}

        def add(engine, client, measure, value):
            samples.setdefault((engine, client, measure), []).append(value)

        per_round = max(1, args.pings // args.runs)
        for _ in range(args.runs):
            for engine, conn, table, port, user in engines:
                for v in pings(conn, per_round):
                    add(engine, "psycopg", "select1_ms", v)
                for v in pings(conn, max(1, per_round // 4), CATALOG_QUERY):
                    add(engine, "psycopg", "catalog_ms", v)
                for binary in (False, True):
                    kind = "binary" if binary else "text"
                    rate, rows = stream(conn, table, binary, 1)
                    add(engine, "psycopg", "stream_rows_per_s_" + kind, (rate, rows))
                    mb, rate, rows = copy_out(conn, table, binary, 1)
                    add(engine, "psycopg", "copy_mb_per_s_" + kind, (mb, rate, rows))
                rate, rows = adbc_read(f"postgresql://{user}@127.0.0.1:{port}/{user}", table, 1)
                add(engine, "adbc", "read_rows_per_s", (rate, rows))
                j = jdbc(port, user, table, per_round, 1)
                add(engine, "pgjdbc", "select1_ms", (j["p50"], j["p95"]))
                add(engine, "pgjdbc", "stream_rows_per_s", (j["rows_per_s"], j["rows"]))
        results = []
        for (engine, client, measure), values in samples.items():
            r = {"engine": engine, "client": client, "measure": measure}
            if (client, measure) == ("pgjdbc", "select1_ms"):
                r.update(p50=statistics.median(v[0] for v in values), p95=statistics.median(v[1] for v in values),
                         runs=per_round * len(values))
            elif measure.endswith("_ms"):
                r.update(p50=pct(values, 50), p95=pct(values, 95), runs=len(values))
            elif measure.startswith("copy"):
                r.update(value=statistics.median(v[0] for v in values), rows_per_s=statistics.median(v[1] for v in values),
                         rows=values[-1][2], runs=len(values))
            else:
                r.update(value=statistics.median(v[0] for v in values), rows=values[-1][1], runs=len(values))
            results.append(r)
        results.append({"engine": "lakecube", "measure": "peak_rss_mib", "value": lc.peak_rss_kib() / 1024})
    finally:
        lc.stop()
        pg.stop()

    def get(engine, client, measure, key):
        return next(r[key] for r in results if r["engine"] == engine and r.get("client") == client and r["measure"] == measure)

    lines = [f"rows: {same[0]} (sum footfall {same[1]}, equal on both servers)", "",
             "| client | measure | lakecube | PostgreSQL 15 | lakecube / PostgreSQL |", "|---|---|---|---|---|"]
    for client, measure, key, unit in [("psycopg", "select1_ms", "p50", "ms p50"), ("psycopg", "select1_ms", "p95", "ms p95"),
                                       ("psycopg", "catalog_ms", "p50", "ms p50"), ("psycopg", "catalog_ms", "p95", "ms p95"),
                                       ("pgjdbc", "select1_ms", "p50", "ms p50"), ("pgjdbc", "select1_ms", "p95", "ms p95"),
                                       ("psycopg", "stream_rows_per_s_text", "value", "rows/s"),
                                       ("psycopg", "stream_rows_per_s_binary", "value", "rows/s"),
                                       ("pgjdbc", "stream_rows_per_s", "value", "rows/s"),
                                       ("adbc", "read_rows_per_s", "value", "rows/s"),
                                       ("psycopg", "copy_mb_per_s_text", "value", "MB/s"),
                                       ("psycopg", "copy_mb_per_s_binary", "value", "MB/s")]:
        a, b = get("lakecube", client, measure, key), get("postgresql", client, measure, key)
        name = (measure.replace("select1_ms", "SELECT 1").replace("catalog_ms", "catalog query (\\dt)")
                .replace("read_rows_per_s", "read lake.traffic into Arrow").replace("stream_rows_per_s", "stream lake.traffic")
                .replace("copy_mb_per_s", "COPY lake.traffic TO STDOUT").replace("_", " "))
        fmt = (lambda v: f"{v:.3f}") if unit.startswith("ms") else (lambda v: f"{v:,.1f}") if unit == "MB/s" else (lambda v: f"{v:,.0f}")
        lines.append(f"| {client} | {name} ({unit}) | {fmt(a)} | {fmt(b)} | {a / b:.2f} |")
    lines.append(f"\nlakecube peak RSS: {results[-1]['value']:.0f} MiB")
    print("\n".join(lines))
    out = ROOT / "benches/results" / f"wire-{datetime.date.today().isoformat()}-{pathlib.Path(args.lake).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results + [machine()], indent=1) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
