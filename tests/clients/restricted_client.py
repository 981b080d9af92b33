"""Real clients as a restricted user (issue 17): what a franchise partner's BI tool lists and
reads must be what their policy gives them, and nothing else. The partner sees the `retail`
view without revenue (nor what is computed from it) and only their store's rows; no `lake`
schema. Through SQLAlchemy's inspector (what Superset reflects), pandas, psycopg running
Power BI's navigator and Tableau's psqlODBC catalog statements as those tools send them, and
psqlODBC itself (Excel's and Tableau's driver) through pyodbc: SQLTables, SQLColumns,
SQLTablePrivileges and a cursor read with Tableau's UseDeclareFetch. Exits non-zero on the
first mismatch.
Usage: python3 restricted_client.py PORT USER PASSWORD STORE"""
import sys

import pandas as pd
import psycopg
import pyodbc
import sqlalchemy as sa

port, user, password, store = sys.argv[1:5]
HIDDEN = {"revenue", "average_basket", "sales_per_visitor"}


def check(ok, what):
    if not ok:
        raise AssertionError(what)
    print("ok:", what)


# SQLAlchemy reflection (Superset's dataset creation) and pandas.
eng = sa.create_engine(f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/lakecube")
insp = sa.inspect(eng)
schemas = insp.get_schema_names()
check("lake" not in schemas and "public" in schemas, f"SQLAlchemy schemas without lake: {schemas}")
check(insp.get_view_names(schema="public") == ["retail"], f"views: {insp.get_view_names(schema='public')}")
check(insp.get_table_names(schema="public") == [], "no tables in public")
names = [c["name"] for c in insp.get_columns("retail", schema="public")]
check("footfall" in names and not HIDDEN & set(names), f"reflected columns without hidden members: {names}")
df = pd.read_sql("SELECT store_code, SUM(footfall) AS footfall FROM retail GROUP BY 1", eng)
check(df["store_code"].tolist() == [store], f"pandas: the partner's store only: {df['store_code'].tolist()}")

# Power BI's navigator and Tableau's psqlODBC catalog statements, as those tools send them.
with psycopg.connect(f"host=127.0.0.1 port={port} dbname=lakecube user={user} password={password}") as c:
    listed = c.execute(
        "select TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE from INFORMATION_SCHEMA.tables "
        "where TABLE_SCHEMA not in ('information_schema', 'pg_catalog') order by TABLE_SCHEMA, TABLE_NAME"
    ).fetchall()
    check(listed == [("public", "retail", "VIEW")], f"Power BI navigator: {listed}")
    cols = [r[0] for r in c.execute(
        "select COLUMN_NAME, ORDINAL_POSITION from INFORMATION_SCHEMA.columns "
        "where TABLE_SCHEMA = 'public' and TABLE_NAME = 'retail' order by ORDINAL_POSITION"
    ).fetchall()]
    check(cols == names, f"Power BI columns = reflected columns: {cols}")
    tableau = c.execute(
        "select relname, nspname, relkind from pg_catalog.pg_class c, pg_catalog.pg_namespace n "
        "where relkind in ('r', 'v', 'm', 'f') and nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'pg_temp_1') "
        "and n.oid = relnamespace order by nspname, relname"
    ).fetchall()
    check(tableau == [("retail", "public", "v")], f"Tableau's table list: {tableau}")
    wrapped = c.execute(
        'select "_"."store_code", "_"."C1" from (select "rows"."store_code" as "store_code", sum("rows"."footfall") as "C1" '
        'from (select "_"."store_code", "_"."footfall" from "public"."retail" "_") "rows" group by "store_code") "_" '
        'where not "_"."C1" is null limit 1000001'
    ).fetchall()
    check([r[0] for r in wrapped] == [store], f"Power BI DirectQuery: the partner's store only: {wrapped}")
    privileges = c.execute(
        "select has_table_privilege('public.retail', 'SELECT'), has_schema_privilege('lake', 'USAGE'), "
        "has_column_privilege('public.retail', 'revenue', 'SELECT')"
    ).fetchone()
    check(privileges == (True, False, False), f"privilege functions: {privileges}")

# psqlODBC through pyodbc, with Tableau's settings.
odbc = pyodbc.connect(
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
    f"PORT={port};DATABASE=lakecube;UID={user};PWD={password};SSLMODE=disable;UseDeclareFetch=1;Fetch=2048;"
)
cur = odbc.cursor()
tables = sorted((r.table_schem, r.table_name) for r in cur.tables(tableType="TABLE,VIEW"))
check(tables == [("public", "retail")], f"SQLTables: {tables}")
odbc_cols = [r.column_name for r in cur.columns(table="retail", schema="public")]
check(odbc_cols == names, f"SQLColumns = reflected columns: {odbc_cols}")
grants = {(r.table_schem, r.table_name, r.privilege) for r in cur.tablePrivileges(table="%")}
check(all(s == "public" and t == "retail" for s, t, _ in grants), f"SQLTablePrivileges lists only retail: {grants}")
rows = cur.execute("SELECT DISTINCT store_code FROM retail WHERE period >= ?", "2000-01-01").fetchall()
check([r[0] for r in rows] == [store], f"a cursor read (UseDeclareFetch): {rows}")
odbc.close()
print(f"restricted {user}: all checks passed")
