"""Ingest throughput and peak memory, side by side with DuckDB in the same run.

A door-sensor CSV of N rows (15-minute counts for the stores and departments of a tiny lake,
written by DuckDB) is ingested by `lakecube ingest` (read, validate, aggregate to hours, one
Delta MERGE commit), and read by DuckDB's `read_csv` into a Parquet file. Each runs as its own
process under /usr/bin/time, which gives wall time and peak RSS. Two sizes (N/10 and N) show
whether memory grows with the file.

Usage: python3 benches/ingest.py [--rows 10000000]   (benches/ingest.sh builds and runs it)
Prints a Markdown table; writes benches/results/ingest-<date>.json."""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

import duckdb

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAKECUBE = ROOT / "target" / "release" / "lakecube"


def timed(args, env=None):
    """Runs a command under /usr/bin/time -v: (wall seconds, peak RSS MiB, stdout)."""
    out = subprocess.run(["/usr/bin/time", "-v"] + [str(a) for a in args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{out.stdout}\n{out.stderr}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return seconds, rss, out.stdout


def codes(lake, sql):
    out = subprocess.run([LAKECUBE, "query", "--lake", lake, "--format", "csv", sql], capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[1:-1]


def write_csv(path, rows, stores, departments):
    """rows sensor counts: every store × department, 15-minute intervals from 2026-01-01."""
    ns, nd = len(stores), len(departments)
    store_list = "[" + ", ".join(f"'{c}'" for c in stores) + "]"
    department_list = "[" + ", ".join(f"'{c}'" for c in departments) + "]"
    duckdb.connect().execute(f"""
        COPY (
          SELECT {store_list}[i % {ns} + 1] AS store, {department_list}[(i // {ns}) % {nd} + 1] AS zone,
                 strftime(TIMESTAMP '2026-01-01' + INTERVAL 15 MINUTE * (i // {ns * nd}), '%Y-%m-%d %H:%M:%S') AS start,
                 (hash(i) % 40)::INT AS "in", (hash(i + 1) % 40)::INT AS "out"
          FROM range({rows}) r(i)
        ) TO '{path}' (HEADER, DELIMITER ',')""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="lakecube-ingest-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        template = tmp / "lake-template"
        subprocess.run([LAKECUBE, "generate", "--lake", template, "--preset", "tiny"], check=True, capture_output=True)
        stores = codes(template, "SELECT store_code FROM lake.stores ORDER BY 1")
        departments = codes(template, "SELECT department_code FROM lake.departments ORDER BY 1")
        source = tmp / "sensors.yaml"
        source.write_text("name: bench\nkind: sensor_counts\n")
        for rows in (args.rows // 10, args.rows):
            csv = tmp / f"sensors-{rows}.csv"
            write_csv(csv, rows, stores, departments)
            mb = csv.stat().st_size / 1e6
            lake = tmp / f"lake-{rows}"
            subprocess.run(["cp", "-r", template, lake], check=True)
            secs, rss, out = timed([LAKECUBE, "ingest", source, "--file", csv, "--lake", lake, "--report-dir", tmp / "reports"])
            assert f"{rows} rows read, {rows} accepted, 0 rejected" in out, out
            results.append({"engine": "lakecube ingest", "rows": rows, "mb": mb, "seconds": secs, "peak_rss_mib": rss})
            script = f"import duckdb; duckdb.connect().execute(\"COPY (SELECT * FROM read_csv('{csv}')) TO '{tmp / 'out.parquet'}' (FORMAT parquet)\")"
            secs, rss, _ = timed([sys.executable, "-c", script])
            results.append({"engine": "duckdb read_csv → parquet", "rows": rows, "mb": mb, "seconds": secs, "peak_rss_mib": rss})
            csv.unlink()
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print("| engine | rows | MB | seconds | rows/s | MB/s | peak RSS MiB |\n|---|---|---|---|---|---|---|")
    for r in results:
        r["rows_per_s"] = r["rows"] / r["seconds"]
        r["mb_per_s"] = r["mb"] / r["seconds"]
        print(f"| {r['engine']} | {r['rows']:,} | {r['mb']:.0f} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {r['mb_per_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    big = [r for r in results if r["rows"] == args.rows]
    print(f"\nratio lakecube / duckdb (time, {args.rows:,} rows): {big[0]['seconds'] / big[1]['seconds']:.2f}")
    out = ROOT / "benches" / "results" / f"ingest-{datetime.date.today()}.json"
    out.write_text(json.dumps({"machine": {"cores": os.cpu_count(), "cpu": platform.processor()}, "results": results}, indent=2))
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
