//! Replays of what clients that do not install here send, written from their public source:
//! Npgsql's connection-open type loading (Power BI, Excel), the psqlODBC session Tableau opens,
//! and Grafana's version probe, table list and time-series queries. Each is sent the way the
//! client sends it, over the raw protocol, and what the client reads is checked.

use crate::common;

use common::raw::{Raw, data_rows, kinds, texts};
use common::*;
use lakecube::datagen::Preset;

/// Npgsql 6+ loads the server's types in one simple-query message: version(), the types
/// (arrays told apart by their receive function), composite fields and enum labels. Every
/// type OID lakecube puts in a RowDescription must come back, arrays as typtype 'a' with
/// their element, or Npgsql cannot read that column.
#[tokio::test(flavor = "multi_thread")]
async fn npgsql_type_loading() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let mut c = Raw::connect(server.port, &[("client_encoding", "UTF8")]).await;
    let r = c.simple(include_str!("replays/npgsql_types.sql")).await;
    assert!(texts(&r, b'E').is_empty(), "{:?}", texts(&r, b'E'));
    assert_eq!(kinds(&r).matches('T').count(), 4, "four results");
    let rows = data_rows(&r);
    assert!(rows[0][0].as_deref().unwrap().starts_with("PostgreSQL 15.8"));
    let types: Vec<&Vec<Option<String>>> = rows.iter().filter(|r| r.len() == 6).collect();
    for t in &types {
        assert!(t[0].is_some() && t[1].is_some() && t[2].is_some() && t[3].is_some(), "Npgsql needs these non-null: {t:?}");
    }
    let find = |oid: u32| types.iter().find(|t| t[1].as_deref() == Some(&oid.to_string())).copied();
    // bool, int2/4/8, float4/8, numeric, text, bytea, date, time, timestamp(tz), and arrays.
    for oid in [16, 21, 23, 20, 700, 701, 1700, 25, 17, 1082, 1083, 1114, 1184] {
        let t = find(oid).unwrap_or_else(|| panic!("type {oid} missing"));
        assert_eq!(t[3].as_deref(), Some("b"), "{t:?}");
    }
    for (array, element) in [(1000, 16), (1005, 21), (1007, 23), (1016, 20), (1021, 700), (1022, 701), (1009, 25)] {
        let t = find(array).unwrap_or_else(|| panic!("array type {array} missing"));
        assert_eq!((t[3].as_deref(), t[5].clone()), (Some("a"), Some(element.to_string())), "{t:?}");
    }
    server.stop_expecting_failures(&[]).await;
}

/// Tableau's ODBC path (psqlODBC 09.x): the connect batch, its probes, the table list with
/// `relhasoids`, then results read through a cursor.
#[tokio::test(flavor = "multi_thread")]
async fn tableau_psqlodbc_session() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let mut c = Raw::connect(server.port, &[]).await;
    let r = c.simple("SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation").await;
    assert_eq!(texts(&r, b'C'), ["SET", "SET", "SHOW"]);
    assert_eq!(data_rows(&r), vec![vec![Some("read committed".to_string())]]);
    let r = c.simple("select oid, typbasetype from pg_type where typname = 'lo'").await;
    assert!(texts(&r, b'E').is_empty() && data_rows(&r).is_empty(), "{r:?}");
    assert_eq!(data_rows(&c.simple("show max_identifier_length").await), vec![vec![Some("63".to_string())]]);
    assert_eq!(data_rows(&c.simple("select current_schema()").await), vec![vec![Some("public".to_string())]]);
    let r = c
        .simple(
            "select relname, nspname, relkind from pg_catalog.pg_class c, pg_catalog.pg_namespace n \
             where relkind in ('r', 'v', 'm', 'f') and nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'pg_temp_1') \
             and n.oid = relnamespace order by nspname, relname",
        )
        .await;
    let tables: Vec<String> = data_rows(&r).iter().map(|r| format!("{}.{}", r[1].clone().unwrap(), r[0].clone().unwrap())).collect();
    assert_eq!(tables, ["lake.departments", "lake.stores", "lake.traffic", "public.retail"]);
    // SQLColumns (09.x text): relhasoids, pg_get_expr, typtype, by table name.
    let r = c
        .simple(
            "select n.nspname, c.relname, a.attname, a.atttypid, t.typname, a.attnum, a.attlen, a.atttypmod, a.attnotnull, \
             c.relhasrules, c.relkind, c.oid, pg_get_expr(d.adbin, d.adrelid), case t.typtype when 'd' then t.typbasetype else 0 end, \
             t.typtypmod, c.relhasoids \
             from (((pg_catalog.pg_class c inner join pg_catalog.pg_namespace n on n.oid = c.relnamespace and c.relname like 'retail' \
             and n.nspname like 'public') inner join pg_catalog.pg_attribute a on (not a.attisdropped) and a.attnum > 0 and a.attrelid = c.oid) \
             inner join pg_catalog.pg_type t on t.oid = a.atttypid) left outer join pg_attrdef d on a.atthasdef and d.adrelid = a.attrelid \
             and d.adnum = a.attnum order by n.nspname, c.relname, attnum",
        )
        .await;
    assert!(texts(&r, b'E').is_empty(), "{:?}", texts(&r, b'E'));
    let columns: Vec<String> = data_rows(&r).iter().map(|r| r[2].clone().unwrap()).collect();
    let engine = engine(&lake(Preset::Tiny)).await;
    let expected: Vec<String> =
        engine.semantic().table("retail").unwrap().schema.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(columns, expected);
    assert!(data_rows(&r).iter().all(|r| r[15].as_deref() == Some("f")), "relhasoids is false");
    // The capability probes fail cleanly; the session goes on.
    let r = c.simple("CREATE LOCAL TEMPORARY TABLE \"#Tableau_1_Connect_CheckCreateTempTableCap\" (COL INTEGER) ON COMMIT PRESERVE ROWS").await;
    assert_eq!(texts(&r, b'E'), ["25006"]);
    let r = c
        .simple("BEGIN;declare \"SQL_CUR0x1\" cursor with hold for SELECT \"retail\".\"region\" AS \"region\", SUM(\"retail\".\"footfall\") AS \"sum:footfall:ok\" FROM \"public\".\"retail\" \"retail\" GROUP BY 1;fetch 2048 in \"SQL_CUR0x1\"")
        .await;
    assert_eq!(texts(&r, b'C')[..2], ["BEGIN", "DECLARE CURSOR"]);
    assert!(!data_rows(&r).is_empty());
    assert_eq!(texts(&c.simple("close \"SQL_CUR0x1\";commit").await, b'C'), ["CLOSE CURSOR", "COMMIT"]);
    // The one failure is the temp-table capability probe, refused on purpose.
    server.stop_expecting_failures(&["25006"]).await;
}

/// Grafana's query-builder table list: the tables of the schemas on the search path.
const GRAFANA_TABLES: &str = "select quote_ident(table_schema) || '.' || quote_ident(table_name) as \"table\" from information_schema.tables \
     where quote_ident(table_schema) not in ('information_schema', 'pg_catalog', '_timescaledb_cache') \
     and table_type in ('BASE TABLE', 'VIEW') and quote_ident(table_schema) IN ( \
     SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
     FROM generate_series(array_lower(string_to_array(current_setting('search_path'), ','), 1), \
     array_upper(string_to_array(current_setting('search_path'), ','), 1)) as i, \
     string_to_array(current_setting('search_path'), ',') s) order by 1";

/// Grafana: the data source's version probe, the query builder's table list over the search
/// path, and a time-series panel after macro expansion (RFC 3339 bounds, epoch buckets),
/// whose numbers must equal the same buckets over the lake table.
#[tokio::test(flavor = "multi_thread")]
async fn grafana_probe_table_list_and_time_series() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let mut c = Raw::connect(server.port, &[]).await;
    let r = c.simple("SELECT current_setting('server_version_num')::int/100 as version").await;
    assert_eq!(data_rows(&r), vec![vec![Some("1500".to_string())]]);
    let r = c.simple(GRAFANA_TABLES).await;
    assert!(texts(&r, b'E').is_empty(), "{:?}", texts(&r, b'E'));
    assert_eq!(data_rows(&r), vec![vec![Some("public.retail".to_string())]], "the tables of the search path");
    // With `lake` on the search path too, its tables are listed as well.
    let r = c.simple("SET search_path = \"$user\", public, lake").await;
    assert!(texts(&r, b'E').is_empty(), "{r:?}");
    let r = c.simple(GRAFANA_TABLES).await;
    let listed: Vec<String> = data_rows(&r).into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(listed, ["lake.departments", "lake.stores", "lake.traffic", "public.retail"]);
    c.simple("RESET search_path").await;

    // A day of the lake, as Grafana's $__timeFilter writes its bounds (RFC 3339, UTC).
    let day = data_rows(&c.simple("SELECT CAST(CAST(min(ts) AS DATE) + 1 AS VARCHAR) FROM lake.traffic").await)[0][0].clone().unwrap();
    let (from, to) = (format!("{day}T08:00:00Z"), format!("{day}T20:00:00Z"));
    let cube = c
        .simple(&format!(
            "SELECT floor(extract(epoch from period)/3600)*3600 AS \"time\", SUM(footfall) AS \"footfall\" FROM retail \
             WHERE period BETWEEN '{from}' AND '{to}' GROUP BY 1 ORDER BY 1"
        ))
        .await;
    let raw = c
        .simple(&format!(
            "SELECT floor(extract(epoch from ts)/3600)*3600 AS \"time\", SUM(footfall) AS \"footfall\" FROM lake.traffic \
             WHERE ts BETWEEN '{from}' AND '{to}' GROUP BY 1 ORDER BY 1"
        ))
        .await;
    assert!(data_rows(&cube).len() > 5, "{cube:?}");
    assert_eq!(data_rows(&cube), data_rows(&raw));
    let first = data_rows(&cube)[0][0].clone().unwrap();
    assert!(first.parse::<i64>().is_ok_and(|e| e % 3600 == 0), "epochs print as PostgreSQL prints them: {first}");
    server.stop_expecting_failures(&[]).await;
}

/// Power BI's navigator over Npgsql (every result column in binary, as tokio-postgres reads
/// them too): the table list, each table's columns with its `unsigned` CASE, the key and
/// relationship queries with upper-case unquoted aliases (read back by their folded names),
/// `DISCARD ALL` from the pool between commands, then a DirectQuery-style wrapped query whose
/// numbers must equal the lake's.
#[tokio::test(flavor = "multi_thread")]
async fn power_bi_navigator_and_direct_query() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let c = server.client().await;
    let tables = c
        .query("select TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE from INFORMATION_SCHEMA.tables where TABLE_SCHEMA not in ('information_schema', 'pg_catalog') order by TABLE_SCHEMA, TABLE_NAME", &[])
        .await
        .unwrap();
    let listed: Vec<String> = tables.iter().map(|r| format!("{}.{} {}", r.get::<_, String>("table_schema"), r.get::<_, String>("table_name"), r.get::<_, String>("table_type"))).collect();
    assert_eq!(listed, ["lake.departments BASE TABLE", "lake.stores BASE TABLE", "lake.traffic BASE TABLE", "public.retail VIEW"]);
    c.simple_query("DISCARD ALL").await.unwrap();

    let columns = c
        .query(
            "select COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, case when (data_type like '%unsigned%') then DATA_TYPE || ' unsigned' else DATA_TYPE end as DATA_TYPE \
             from INFORMATION_SCHEMA.columns where TABLE_SCHEMA = 'public' and TABLE_NAME = 'retail' order by TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<(String, i32, String)> =
        columns.iter().map(|r| (r.get("column_name"), r.get("ordinal_position"), r.get("data_type"))).collect();
    let engine = engine(&lake(Preset::Tiny)).await;
    let schema = engine.semantic().table("retail").unwrap().schema.clone();
    assert_eq!(types.iter().map(|t| t.0.clone()).collect::<Vec<_>>(), schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>());
    assert!(types.iter().enumerate().all(|(i, t)| t.1 == i as i32 + 1), "{types:?}");
    let type_of = |n: &str| types.iter().find(|t| t.0 == n).unwrap().2.clone();
    assert_eq!(
        [type_of("region"), type_of("period"), type_of("revenue"), type_of("conversion"), type_of("footfall"), type_of("opened_on")],
        ["text", "timestamp without time zone", "numeric", "double precision", "bigint", "date"],
        "PostgreSQL type names, which Power BI maps to its own types"
    );

    let keys = c
        .query(
            "select i.CONSTRAINT_SCHEMA || '_' || i.CONSTRAINT_NAME as INDEX_NAME, ii.COLUMN_NAME, ii.ORDINAL_POSITION, \
             case when i.CONSTRAINT_TYPE = 'PRIMARY KEY' then 'Y' else 'N' end as PRIMARY_KEY \
             from INFORMATION_SCHEMA.table_constraints i inner join INFORMATION_SCHEMA.key_column_usage ii \
             on i.CONSTRAINT_SCHEMA = ii.CONSTRAINT_SCHEMA and i.CONSTRAINT_NAME = ii.CONSTRAINT_NAME \
             and i.TABLE_SCHEMA = ii.TABLE_SCHEMA and i.TABLE_NAME = ii.TABLE_NAME \
             where i.TABLE_SCHEMA = 'public' and i.TABLE_NAME = 'retail' and i.CONSTRAINT_TYPE in ('PRIMARY KEY', 'UNIQUE') \
             order by i.CONSTRAINT_SCHEMA || '_' || i.CONSTRAINT_NAME, ii.TABLE_SCHEMA, ii.TABLE_NAME, ii.ORDINAL_POSITION",
            &[],
        )
        .await;
    let stmt = c.prepare("select i.CONSTRAINT_NAME as INDEX_NAME, ii.COLUMN_NAME, ii.ORDINAL_POSITION from INFORMATION_SCHEMA.table_constraints i inner join INFORMATION_SCHEMA.key_column_usage ii on i.CONSTRAINT_NAME = ii.CONSTRAINT_NAME").await.unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["index_name", "column_name", "ordinal_position"], "unqualified, folded names (Power BI reads COLUMN_NAME)");
    assert!(keys.unwrap().is_empty(), "cubes declare no keys");
    let relationships = c
        .query(
            "select pkcol.COLUMN_NAME as PK_COLUMN_NAME, fkcol.TABLE_SCHEMA AS FK_TABLE_SCHEMA, fkcol.TABLE_NAME AS FK_TABLE_NAME, \
             fkcol.COLUMN_NAME as FK_COLUMN_NAME, fkcol.ORDINAL_POSITION as ORDINAL, \
             fkcon.CONSTRAINT_SCHEMA || '_' || fkcol.TABLE_NAME || '_' || 'retail' || '_' || fkcon.CONSTRAINT_NAME as FK_NAME \
             from (select distinct constraint_catalog, constraint_schema, unique_constraint_schema, constraint_name, unique_constraint_name \
             from INFORMATION_SCHEMA.REFERENTIAL_CONSTRAINTS) fkcon \
             inner join INFORMATION_SCHEMA.KEY_COLUMN_USAGE fkcol on fkcon.CONSTRAINT_SCHEMA = fkcol.CONSTRAINT_SCHEMA and fkcon.CONSTRAINT_NAME = fkcol.CONSTRAINT_NAME \
             inner join INFORMATION_SCHEMA.KEY_COLUMN_USAGE pkcol on fkcon.UNIQUE_CONSTRAINT_SCHEMA = pkcol.CONSTRAINT_SCHEMA and fkcon.UNIQUE_CONSTRAINT_NAME = pkcol.CONSTRAINT_NAME \
             where pkcol.TABLE_SCHEMA = 'public' and pkcol.TABLE_NAME = 'retail' and pkcol.ORDINAL_POSITION = fkcol.ORDINAL_POSITION \
             order by FK_NAME, fkcol.ORDINAL_POSITION",
            &[],
        )
        .await
        .unwrap();
    assert!(relationships.is_empty());
    c.simple_query("DISCARD ALL").await.unwrap();

    // DirectQuery: the navigator's columns wrapped in "rows" and "_" derived tables, measures
    // summed with a cast, empty groups filtered, the row cap Power BI puts on every query.
    let cube = c
        .query(
            "select \"_\".\"region\", \"_\".\"C1\", \"_\".\"C2\" from (select \"rows\".\"region\" as \"region\", sum(cast(\"rows\".\"revenue\" as numeric)) as \"C1\", \
             sum(\"rows\".\"footfall\") as \"C2\" from (select \"_\".\"region\", \"_\".\"revenue\", \"_\".\"footfall\" from \"public\".\"retail\" \"_\") \"rows\" \
             group by \"region\") \"_\" where not \"_\".\"C1\" is null order by \"_\".\"region\" limit 1000001",
            &[],
        )
        .await
        .unwrap();
    let raw = c
        .query(
            "select s.region, sum(t.revenue), sum(t.footfall) from lake.traffic t join lake.stores s using (store_id) group by s.region order by s.region",
            &[],
        )
        .await
        .unwrap();
    assert!(!raw.is_empty());
    assert_eq!(cube.len(), raw.len());
    for (a, b) in cube.iter().zip(&raw) {
        assert_eq!(a.get::<_, String>(0), b.get::<_, String>(0));
        let (x, y) = (a.get::<_, Numeric>(1).0, b.get::<_, Numeric>(1).0);
        assert_eq!(x.parse::<f64>().unwrap(), y.parse::<f64>().unwrap(), "revenue {x} vs {y}");
        assert_eq!(a.get::<_, i64>(2), b.get::<_, i64>(2));
    }
    server.stop_expecting_failures(&[]).await;
}
