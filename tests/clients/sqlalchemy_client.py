"""SQLAlchemy 2 (psycopg 3 dialect) and pandas against a lakecube server: the connect-time
probes, schema/table/view listing, and pandas.read_sql, compared with the lake tables.
Usage: python3 sqlalchemy_client.py PORT"""
import sys

import pandas as pd
import sqlalchemy as sa

eng = sa.create_engine(f"postgresql+psycopg://lakecube@127.0.0.1:{sys.argv[1]}/lakecube")
insp = sa.inspect(eng)
schemas = insp.get_schema_names()
assert {"lake", "public"} <= set(schemas), schemas
assert set(insp.get_table_names(schema="lake")) == {"traffic", "stores", "departments"}
assert "retail" in insp.get_view_names(schema="public")
print("ok: schemas, tables and views")

# Superset's dataset creation reflects columns, keys and indexes; each must answer.
cols = insp.get_columns("retail", schema="public")
names = [c["name"] for c in cols]
assert names[:2] == ["period", "store"] and "conversion" in names, names
types = {c["name"]: type(c["type"]).__name__ for c in cols}
assert types["revenue"] == "NUMERIC" and types["conversion"] == "DOUBLE_PRECISION" and types["period"] == "TIMESTAMP", types
assert all(c["comment"] for c in cols), "every cube member carries its description"
lake_cols = {c["name"]: c for c in insp.get_columns("traffic", schema="lake")}
assert type(lake_cols["store_id"]["type"]).__name__ == "INTEGER" and lake_cols["store_id"]["nullable"] is False, lake_cols
assert insp.get_pk_constraint("retail", schema="public")["constrained_columns"] == []
assert insp.get_foreign_keys("retail", schema="public") == []
assert insp.get_indexes("traffic", schema="lake") == []
assert insp.get_unique_constraints("traffic", schema="lake") == []
assert insp.get_table_comment("retail", schema="public")["text"].startswith("Footfall and sales")
print("ok: reflection of columns, keys, indexes and comments")

cube = pd.read_sql("SELECT country, SUM(footfall) AS footfall FROM retail GROUP BY country ORDER BY country", eng)
raw = pd.read_sql(
    "SELECT s.country, SUM(t.footfall) AS footfall FROM lake.traffic t JOIN lake.stores s USING (store_id) "
    "GROUP BY s.country ORDER BY s.country", eng)
assert cube["country"].tolist() == raw["country"].tolist() and len(raw) == 3, (cube, raw)
assert cube["footfall"].tolist() == raw["footfall"].tolist(), (cube, raw)
print("ok: pandas.read_sql cube = lake by country")
print("sqlalchemy: all checks passed")
