"""The access-policy differential over the wire (issue 17), with psycopg 3: for each random
cube query, each restricted user's answer must equal head office's answer to the same query
with the user's policy filter added (computed from the lake, rollups off), on every protocol
path psycopg takes — the simple protocol (a query without parameters), the extended protocol
(binary results), a named prepared statement, and a server-side cursor (DECLARE/FETCH) —
with rollups on and off in turn. A query naming a member the user may not see must fail
with 42703. Exits non-zero on the first mismatch.
Usage: python3 policy_differential.py PORT CASES.json
CASES.json: {"users": {"marc": "pw", ...}, "reference": ["boss", "pw"],
             "cases": [{"sql": ..., "expected": {"marc": SQL or null (42703)}}]}"""
import json
import sys
from decimal import Decimal

import psycopg

port, path = sys.argv[1], sys.argv[2]
spec = json.load(open(path))


def connect(user, password):
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname=lakecube user={user} password={password}", autocommit=True)


def text(v):
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, Decimal):
        return str(v)
    return str(v)


def same(a, b):
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0)


def rows(conn, sql, path):
    if path == "simple":
        cur = conn.execute(sql)
    elif path == "extended":
        cur = conn.cursor(binary=True)
        cur.execute(sql, binary=True)
    elif path == "prepared":
        cur = conn.cursor(binary=True)
        cur.execute(sql, prepare=True, binary=True)
    else:
        with conn.transaction():
            cur = conn.cursor(name="policy_differential")
            cur.execute(sql)
            out = sorted([text(v) for v in r] for r in cur.fetchall())
            cur.close()
            return out
    return sorted([text(v) for v in r] for r in cur.fetchall())


reference = connect(*spec["reference"])
reference.execute("SET lakecube.rollups = off")
paths = ["simple", "extended", "prepared", "cursor"]
checked = {"denied": 0}
for user, password in spec["users"].items():
    conn = connect(user, password)
    for i, case in enumerate(spec["cases"]):
        path, rollups = paths[i % 4], ("on" if (i // 4) % 2 == 0 else "off")
        conn.execute(f"SET lakecube.rollups = {rollups}")
        want_sql = case["expected"][user]
        where = f"{user}, case {i}, {path}, rollups {rollups}: {case['sql']}"
        if want_sql is None:
            try:
                rows(conn, case["sql"], path)
            except psycopg.errors.UndefinedColumn:
                checked["denied"] += 1
                continue
            raise AssertionError(f"{where}: a hidden member was answered")
        want = rows(reference, want_sql, "simple")
        got = rows(conn, case["sql"], path)
        if len(got) != len(want) or not all(len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)) for a, b in zip(got, want)):
            raise AssertionError(f"{where}\n got:  {got[:5]}\n want: {want[:5]} (from {want_sql})")
        checked[path] = checked.get(path, 0) + 1
print("checked:", json.dumps(checked))
print("policy differential: all checks passed")
