"""DuckDB's side of the end-to-end benchmark (benches/e2e.rs), in-process through PyPI's
`duckdb`, over the same Parquet files as lakecube: each Delta table's live files, found by
replaying its `_delta_log` (adds minus removes), so a file a later commit replaced is not read.

  python3 duck.py run LAKE QUERIES.json WARMUP RUNS   -> JSON on stdout: per query, the times
      in ms and the rows (as text, NULL as "NULL") of the last run
  python3 duck.py export LAKE OUT_DIR                 -> OUT_DIR/{stores,departments,traffic}.csv,
      with a header row, for PostgreSQL's COPY
"""
import json
import pathlib
import sys
import time

import duckdb

TABLES = ["stores", "departments", "traffic"]


def live_files(table_dir: pathlib.Path) -> list:
    log = table_dir / "_delta_log"
    if any(log.glob("*.checkpoint.parquet")):
        sys.exit(f"{table_dir}: the Delta log has checkpoints; the benchmark reads freshly generated lakes")
    files = {}
    for commit in sorted(log.glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = True
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
    return [str(table_dir / p) for p in files]


def connect(lake: pathlib.Path):
    db = duckdb.connect()
    for t in TABLES:
        paths = live_files(lake / t)
        hive = ", hive_partitioning = true" if t == "traffic" else ""
        db.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({paths!r}{hive})")
    # The rollups' own files, as views `rollup_<name>` (the `.rollup.sql` questions read them).
    for table_dir in sorted((lake / "_rollups").glob("*/*")):
        paths = live_files(table_dir)
        if paths:
            db.execute(f"CREATE VIEW rollup_{table_dir.name} AS SELECT * FROM read_parquet({paths!r}, hive_partitioning = true)")
    return db


def text(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def run(lake, queries_file, warmup, runs):
    db = connect(pathlib.Path(lake))
    out = []
    for q in json.load(open(queries_file)):
        times, rows = [], []
        for i in range(warmup + runs):
            t = time.perf_counter()
            rows = db.execute(q["sql"]).fetchall()
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1000)
        out.append({"name": q["name"], "times_ms": times, "rows": [[text(v) for v in r] for r in rows]})
    json.dump(out, sys.stdout)


def export(lake, out_dir):
    db = connect(pathlib.Path(lake))
    out = pathlib.Path(out_dir)
    for t in TABLES:
        cols = "store_id, department_id, ts, footfall, transactions, revenue, units" if t == "traffic" else "*"
        db.execute(f"COPY (SELECT {cols} FROM {t}) TO '{out / (t + '.csv')}' (HEADER, DELIMITER ',')")


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
