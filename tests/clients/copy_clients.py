"""The clients that read through COPY … TO STDOUT, against a lakecube server: psycopg 3's
cursor.copy() in text, CSV and binary, asyncpg's copy_from_query, the ADBC PostgreSQL driver
(binary COPY into Arrow), and polars' read_database_uri with its connectorx and ADBC engines.
Each answer of a cube query is compared with hand-written SQL over the lake tables, read with
a plain SELECT. Exits non-zero on the first mismatch.
Usage: python3 copy_clients.py PORT"""
import asyncio
import csv
import io
import sys
from decimal import Decimal

import adbc_driver_postgresql.dbapi
import asyncpg
import polars as pl
import psycopg

port = sys.argv[1]
uri = f"postgresql://lakecube@127.0.0.1:{port}/lakecube"
CUBE = "SELECT region, SUM(revenue) AS revenue, SUM(footfall) AS footfall FROM retail GROUP BY 1 ORDER BY 1"
RAW = """SELECT s.region, SUM(t.revenue) AS revenue, SUM(t.footfall) AS footfall
         FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1 ORDER BY 1"""

with psycopg.connect(f"host=127.0.0.1 port={port} user=lakecube dbname=lakecube") as conn:
    raw = conn.execute(RAW).fetchall()
    assert len(raw) >= 3, raw
    want = [(r[0], Decimal(r[1]), int(r[2])) for r in raw]

    with conn.cursor() as cur:
        with cur.copy(f"COPY ({CUBE}) TO STDOUT") as copy:
            text = b"".join(bytes(b) for b in copy).decode()
    got = [tuple(line.split("\t")) for line in text.splitlines()]
    assert [(r, Decimal(v), int(f)) for r, v, f in got] == want, (got, want)
    print(f"ok: psycopg COPY text, {len(got)} rows")

    with conn.cursor() as cur:
        with cur.copy(f"COPY ({CUBE}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            text = b"".join(bytes(b) for b in copy).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["region", "revenue", "footfall"], rows[0]
    assert [(r, Decimal(v), int(f)) for r, v, f in rows[1:]] == want, rows
    print("ok: psycopg COPY csv with header")

    with conn.cursor() as cur:
        with cur.copy(f"COPY ({CUBE}) TO STDOUT WITH (FORMAT binary)") as copy:
            copy.set_types(["text", "numeric", "int8"])
            got = list(copy.rows())
    assert [(r, Decimal(v), int(f)) for r, v, f in got] == want, (got, want)
    print("ok: psycopg COPY binary, typed rows")


async def asyncpg_copy():
    conn = await asyncpg.connect(host="127.0.0.1", port=int(port), user="lakecube", database="lakecube")
    out = io.BytesIO()
    await conn.copy_from_query(CUBE, output=out, format="csv")
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert [(r, Decimal(v), int(f)) for r, v, f in rows] == want, rows
    await conn.close()


asyncio.run(asyncpg_copy())
print("ok: asyncpg copy_from_query csv")

with adbc_driver_postgresql.dbapi.connect(uri) as conn:
    with conn.cursor() as cur:
        cur.execute(CUBE)
        table = cur.fetch_arrow_table()
got = list(zip(table.column("region").to_pylist(), table.column("revenue").to_pylist(), table.column("footfall").to_pylist()))
assert [(r, Decimal(str(v)), int(f)) for r, v, f in got] == want, (got, want)
print(f"ok: ADBC fetch_arrow_table, {table.num_rows} rows")

for engine in ("connectorx", "adbc"):
    df = pl.read_database_uri(CUBE, uri, engine=engine)
    got = list(df.iter_rows())
    assert [(r, Decimal(str(v)), int(f)) for r, v, f in got] == want, (engine, got, want)
    print(f"ok: polars read_database_uri with {engine}")
print("all checks passed")
