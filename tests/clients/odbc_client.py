"""psqlODBC (Debian's odbc-postgresql, driver "PostgreSQL Unicode", under unixODBC) through
pyodbc against a lakecube server, as Excel and Tableau's ODBC path use it: the catalog calls
(SQLTables with its catalog, schema and table-type lists, SQLColumns, SQLPrimaryKeys,
SQLForeignKeys, SQLStatistics, SQLGetTypeInfo, SQLProcedureColumns), a parameterized cube query and a full-table
read, compared with hand-written SQL over the lake tables. Run twice: with the driver's
defaults, and with Tableau's settings (UseDeclareFetch=1;Fetch=2048: results read through
`declare … cursor` / `fetch 2048`). Exits non-zero on the first mismatch.
Usage: python3 odbc_client.py PORT"""
import sys
from decimal import Decimal

import pyodbc

port = sys.argv[1]

# Steps that wait on PostgreSQL's typing of quoted literals (a literal takes the type its
# context needs), being built in the engine; remove a name once its statement plans:
# - SQLPrimaryKeys: `... AND i.indisprimary = 't' ...` (a boolean column compared with 't');
# - SQLForeignKeys: `select 'lakecube'::name as "PKTABLE_CAT", ...` (a literal cast to name).
WAITING_ON_LITERAL_TYPING: set = set()

CONFIGURATIONS = {
    "defaults": "",
    "Tableau's UseDeclareFetch=1;Fetch=2048": "UseDeclareFetch=1;Fetch=2048;",
}

CUBE = """SELECT region, SUM(revenue), SUM(footfall), SUM(conversion)
          FROM retail WHERE period >= ? GROUP BY region ORDER BY region"""
RAW = """SELECT s.region, SUM(t.revenue), SUM(t.footfall), SUM(t.transactions)
         FROM lake.traffic t JOIN lake.stores s USING (store_id)
         WHERE t.ts >= ? GROUP BY s.region ORDER BY s.region"""


def connect(settings):
    return pyodbc.connect(
        "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
        f"PORT={port};DATABASE=lakecube;UID=lakecube;PWD=;SSLMODE=disable;{settings}"
    )


def sql_tables(cur):
    tables = {(r.table_schem, r.table_name, r.table_type) for r in cur.tables().fetchall()}
    assert {("lake", t, "TABLE") for t in ("traffic", "stores", "departments")} <= tables, tables
    assert ("public", "retail", "VIEW") in tables, tables
    lake = sorted(r.table_name for r in cur.tables(schema="lake").fetchall())
    assert lake == ["departments", "stores", "traffic"], lake
    views = [(r.table_schem, r.table_name) for r in cur.tables(tableType="VIEW").fetchall()]
    assert ("public", "retail") in views, views
    # SQL_ALL_CATALOGS, SQL_ALL_SCHEMAS, SQL_ALL_TABLE_TYPES: `select NULL, NULL, NULL`-shaped
    # lists (their repeated NULL columns).
    catalogs = [r.table_cat for r in cur.tables(catalog="%", schema="", table="").fetchall()]
    assert catalogs == ["lakecube"], catalogs
    schemas = {r.table_schem for r in cur.tables(catalog="", schema="%", table="").fetchall()}
    assert {"lake", "public"} <= schemas, schemas
    types = {r.table_type for r in cur.tables(catalog="", schema="", table="", tableType="%").fetchall()}
    assert {"TABLE", "VIEW"} <= types, types


def sql_columns(cur):
    expected = [tuple(r) for r in cur.execute(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = 'lake' AND table_name = 'traffic' ORDER BY ordinal_position").fetchall()]
    got = [(r.column_name, r.type_name) for r in cur.columns(table="traffic", schema="lake").fetchall()]
    assert got == expected and len(got) > 5, (got, expected)
    retail = {r.column_name: r for r in cur.columns(table="retail", schema="public").fetchall()}
    assert retail["period"].type_name == "timestamp" and retail["period"].data_type == pyodbc.SQL_TYPE_TIMESTAMP, retail["period"]
    assert retail["revenue"].type_name == "numeric" and retail["conversion"].type_name == "float8", retail
    assert retail["region"].type_name == "text" and retail["region"].ordinal_position > 0, retail["region"]


def sql_primary_keys(cur):
    # lakecube declares no keys (a cube's primary key is not an enforced key).
    assert cur.primaryKeys("stores", schema="lake").fetchall() == []


def sql_foreign_keys(cur):
    assert cur.foreignKeys(table="stores", schema="lake").fetchall() == []
    assert cur.foreignKeys(foreignTable="traffic", foreignSchema="lake").fetchall() == []


def sql_statistics(cur):
    # No indexes: no index rows (a table-statistics row, TYPE 0, may come).
    rows = cur.statistics("traffic", schema="lake").fetchall()
    assert all(r.type == pyodbc.SQL_TABLE_STAT for r in rows), rows


def sql_get_type_info(cur):
    # psqlODBC's own list, as it answers PostgreSQL (timestamps as timestamptz).
    names = {r.type_name for r in cur.getTypeInfo().fetchall()}
    assert {"int4", "int8", "numeric", "float8", "text", "bool", "timestamptz", "date"} <= names, names
    ts = [r.type_name for r in cur.getTypeInfo(pyodbc.SQL_TYPE_TIMESTAMP).fetchall()]
    assert ts == ["timestamptz"], ts


def sql_procedure_columns(cur):
    # pg_size_pretty(bigint) and pg_size_pretty(numeric), each returning text: the functions
    # a user may EXECUTE, their argument lists read from pg_proc's arrays.
    # (By position: psqlODBC names the schema column procedur_schem.)
    cols = {(r[1], r.type_name, r.column_type) for r in cur.procedureColumns(procedure="pg_size_pretty").fetchall()}
    assert {("pg_catalog", "int8", pyodbc.SQL_PARAM_INPUT), ("pg_catalog", "text", pyodbc.SQL_RETURN_VALUE)} <= cols, cols


def parameterized_cube_query(cur):
    since = "2024-06-01"
    raw = cur.execute(RAW, since).fetchall()
    cube = cur.execute(CUBE, since).fetchall()
    assert len(raw) >= 3 and [c[0] for c in cube] == [r[0] for r in raw], (cube, raw)
    for c, r in zip(cube, raw):
        assert c[1] == r[1] and isinstance(c[1], Decimal), (c, r)
        assert c[2] == r[2], (c, r)
        assert abs(c[3] - r[3] / r[2]) <= 1e-9 * abs(c[3]), ("conversion is a ratio of sums", c, r)


def full_table_read(cur):
    count, footfall = cur.execute("SELECT count(*), sum(footfall) FROM lake.traffic").fetchone()
    cur.execute("SELECT store_id, department_id, ts, footfall, revenue FROM lake.traffic")
    n, total = 0, 0
    while rows := cur.fetchmany(10000):
        n += len(rows)
        total += sum(r.footfall for r in rows)
    assert (n, total) == (count, footfall) and n > 1000, (n, total, count, footfall)


STEPS = {
    "SQLTables": sql_tables,
    "SQLColumns": sql_columns,
    "SQLPrimaryKeys": sql_primary_keys,
    "SQLForeignKeys": sql_foreign_keys,
    "SQLStatistics": sql_statistics,
    "SQLGetTypeInfo": sql_get_type_info,
    "SQLProcedureColumns": sql_procedure_columns,
    "parameterized cube query": parameterized_cube_query,
    "full-table read": full_table_read,
}

for configuration, settings in CONFIGURATIONS.items():
    conn = connect(settings)
    cur = conn.cursor()
    for name, step in STEPS.items():
        if name in WAITING_ON_LITERAL_TYPING:
            print(f"waiting: {name} ({configuration}) on literal typing")
            continue
        step(cur)
        print(f"ok: {name} ({configuration})")
    conn.close()
print("odbc: all checks passed")
