"""psycopg 3 against a lakecube server: text and binary results, parameters, a server-side
cursor, nested transactions (savepoints) and its type lookup. Cube answers are compared with
hand-written SQL over the lake tables. Exits non-zero on the first mismatch.
Usage: python3 psycopg_client.py PORT"""
import sys
from decimal import Decimal

import psycopg

port = sys.argv[1]
RAW = """SELECT s.region, SUM(t.revenue), SUM(t.footfall), SUM(t.transactions)
         FROM lake.traffic t JOIN lake.stores s USING (store_id)
         WHERE t.ts >= %s GROUP BY s.region ORDER BY s.region"""
CUBE = """SELECT region, SUM(revenue), SUM(footfall), SUM(conversion)
          FROM retail WHERE period >= %s GROUP BY region ORDER BY region"""

with psycopg.connect(f"host=127.0.0.1 port={port} user=lakecube dbname=lakecube") as conn:
    since = "2024-06-01"
    raw = conn.execute(RAW, [since]).fetchall()
    assert len(raw) > 5, raw
    for binary in (False, True):
        cube = conn.cursor(binary=binary).execute(CUBE, [since]).fetchall()
        assert [r[0] for r in cube] == [r[0] for r in raw], (cube, raw)
        for c, r in zip(cube, raw):
            assert c[1] == r[1] and isinstance(c[1], Decimal), (c, r)
            assert c[2] == r[2], (c, r)
            assert abs(c[3] - r[3] / r[2]) <= 1e-9 * abs(c[3]), ("conversion is a ratio of sums", c, r)
        print("ok: cube = lake by region, binary" if binary else "ok: cube = lake by region, text")

    with conn.cursor(name="lakecube_srv") as cur:
        cur.itersize = 500
        cur.execute("SELECT store_id, ts, footfall FROM lake.traffic WHERE ts < %s", ["2024-02-01"])
        n = sum(1 for _ in cur)
    expected = conn.execute("SELECT count(*) FROM lake.traffic WHERE ts < %s", ["2024-02-01"]).fetchone()[0]
    assert n == expected and n > 1000, (n, expected)
    print(f"ok: server-side cursor read {n} rows")

    with conn.transaction():
        with conn.transaction():
            conn.execute("SELECT 1")
        try:
            with conn.transaction():
                conn.execute("SELECT no_such_member FROM retail")
        except psycopg.errors.UndefinedColumn:
            pass
        assert conn.execute("SELECT 2").fetchone() == (2,)
    print("ok: nested transactions and a rolled-back savepoint")

    # Array parameters: a list of strings goes as text typed unknown (pgcli's completion
    # refresh), a list of ints as a binary int2[]; both must read as PostgreSQL arrays.
    kinds = conn.execute("SELECT relname FROM pg_class WHERE relkind = ANY(%s) ORDER BY 1", [["r", "v"]]).fetchall()
    listed = conn.execute("SELECT relname FROM pg_class WHERE relkind IN ('r', 'v') ORDER BY 1").fetchall()
    assert kinds == listed and ("retail",) in kinds, (kinds, listed)
    stores = conn.execute("SELECT store_id FROM lake.stores WHERE store_id = ANY(%s) ORDER BY 1", [[2, 1]]).fetchall()
    assert stores == [(1,), (2,)], stores
    assert conn.execute("SELECT %s::text[]", [["a,b", 'say "hi"', None, "NULL"]]).fetchone() == (["a,b", 'say "hi"', None, "NULL"],)
    assert conn.execute("SELECT cardinality(%s::int[])", ["{1,2,3}"]).fetchone()[0] == 3
    print("ok: array parameters, text and binary")

    # PostgreSQL's literal typing and arithmetic errors.
    primary = "SELECT count(*) FROM pg_index WHERE indisprimary = {}"
    assert conn.execute(primary.format("'t'")).fetchone() == conn.execute(primary.format("true")).fetchone()
    assert conn.execute("SELECT 1 + '2', 'cube'::name").fetchone() == (3, "cube")
    assert conn.execute("SELECT 2::numeric(12,2) / 3").fetchone() == (Decimal("0.66666666666666666667"),)
    for sql, error in [
        ("SELECT 9223372036854775807::int8 + %s::int8", psycopg.errors.NumericValueOutOfRange),
        ("SELECT 1.0::float8 / (%s - 1)", psycopg.errors.DivisionByZero),
        ("SELECT 'abc'::int + %s", psycopg.errors.InvalidTextRepresentation),
        ("SELECT no_such_function(%s)", psycopg.errors.UndefinedFunction),
    ]:
        try:
            conn.execute(sql, [1])
            raise AssertionError(f"{sql} should fail")
        except error:
            conn.rollback()
    print("ok: literal typing, overflow and division errors by SQLSTATE")

    info = psycopg.types.TypeInfo.fetch(conn, "numeric")
    assert info is not None and info.oid == 1700 and info.array_oid == 1231, info
    print("ok: TypeInfo.fetch(numeric)")
print("psycopg: all checks passed")
