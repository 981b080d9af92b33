"""pgcli (PyPI) against a lakecube server: the catalog queries of its completion refresh, run
by its own executor (pgcli.pgexecute.PGExecute over psycopg 3: search path, schemata, tables,
views and their columns, functions, data types, foreign keys, databases, the casing query),
then the whole refresh as pgcli runs it in the background (CompletionRefresher), and a cube
query compared with hand-written SQL over the lake tables. Exits non-zero on the first
mismatch. Usage: python3 pgcli_client.py PORT"""
import sys

from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgexecute import PGExecute
from pgspecial.main import PGSpecial

port = sys.argv[1]

# Steps that wait on text-array parameters, being built in the engine: pgcli passes the
# relation kinds as a list, `WHERE c.relkind = ANY(%s)` with `{r,p,f}` (psycopg sends a
# text[]). Remove a name once its statement plans.
WAITING_ON_ARRAY_PARAMETERS: set = set()

e = PGExecute("lakecube", "lakecube", None, "127.0.0.1", port, None)


def search_path():
    assert "public" in e.search_path(), e.search_path()


def schemata():
    assert {"lake", "public"} <= set(e.schemata()), e.schemata()


def tables():
    assert {("lake", "traffic"), ("lake", "stores"), ("lake", "departments")} <= set(e.tables())


def views():
    assert ("public", "retail") in set(e.views())


def table_columns():
    cols = {(s, t, c): ty for s, t, c, ty, *_ in e.table_columns()}
    assert cols[("lake", "traffic", "footfall")] == "integer", cols
    assert cols[("lake", "traffic", "ts")] == "timestamp without time zone", cols


def view_columns():
    cols = {(s, t, c): ty for s, t, c, ty, *_ in e.view_columns()}
    assert cols[("public", "retail", "revenue")] == "numeric", cols
    assert cols[("public", "retail", "conversion")] == "double precision", cols


def functions():
    fs = {(f.schema_name, f.func_name): f for f in e.functions()}
    f = fs[("pg_catalog", "pg_size_pretty")]
    assert f.return_type == "text" and f.arg_types in (("bigint",), ("numeric",)), f
    f = fs[("pg_catalog", "aclexplode")]
    assert f.arg_names[:2] == ("acl", "grantor") and f.arg_modes[:2] == ("i", "o"), f


def datatypes():
    # No user-defined types (the query leaves out pg_catalog and information_schema).
    assert list(e.datatypes()) == []


def foreignkeys():
    assert list(e.foreignkeys()) == []


def databases():
    assert "lakecube" in e.databases(), e.databases()
    rows, headers, _ = e.full_databases()
    assert headers[0] == "Name" and any(r[0] == "lakecube" for r in rows), rows


def casing():
    # Words of SQL and PL/pgSQL function bodies outside pg_catalog: lakecube has none.
    assert list(e.casing()) == []


def completion_refresh():
    done = []
    CompletionRefresher()._bg_refresh(e, PGSpecial(), done.append, settings={"single_connection": True})
    (completer,) = done
    tables = completer.dbmetadata["tables"]
    assert {"traffic", "stores", "departments"} <= set(tables["lake"]), tables
    assert "retail" in completer.dbmetadata["views"]["public"]
    assert "footfall" in tables["lake"]["traffic"], tables["lake"]["traffic"]


def cube_query():
    (_, cube, *_), = e.run("SELECT region, SUM(footfall) FROM retail GROUP BY region ORDER BY region")
    (_, raw, *_), = e.run(
        "SELECT s.region, SUM(t.footfall) FROM lake.traffic t JOIN lake.stores s USING (store_id) "
        "GROUP BY s.region ORDER BY s.region")
    cube, raw = list(cube), list(raw)
    assert cube == raw and len(raw) >= 3, (cube, raw)


STEPS = {
    "search_path": search_path,
    "schemata": schemata,
    "tables": tables,
    "views": views,
    "table_columns": table_columns,
    "view_columns": view_columns,
    "functions": functions,
    "datatypes": datatypes,
    "foreignkeys": foreignkeys,
    "databases": databases,
    "casing": casing,
    "completion refresh": completion_refresh,
    "cube query": cube_query,
}

for name, step in STEPS.items():
    if name in WAITING_ON_ARRAY_PARAMETERS:
        print(f"waiting: {name} on text-array parameters")
        continue
    step()
    print(f"ok: {name}")
print("pgcli: all checks passed")
