//! The PostgreSQL front door, driven by real clients (psql, tokio-postgres) against a server
//! running in this process on a free port. Answers must equal `lakecube query`'s.

use crate::common;

use chrono::NaiveDateTime;
use common::*;
use lakecube::datagen::Preset;
use rust_decimal::Decimal;
use tokio_postgres::SimpleQueryMessage;

const BY_REGION: &str =
    "SELECT s.region, SUM(t.revenue) AS revenue, SUM(t.footfall) AS footfall FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1 ORDER BY 1";

#[tokio::test(flavor = "multi_thread")]
async fn psql_answers_equal_lakecube_query() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    for sql in [
        BY_REGION,
        "SELECT month, count(*) AS n, SUM(units) AS units FROM lake.traffic GROUP BY month ORDER BY month",
        "SELECT store_code, store_name, opened_on, closed_on FROM lake.stores ORDER BY store_id",
        "SELECT region, SUM(revenue) AS revenue, ROUND(SUM(conversion), 9) AS conversion, COUNT(DISTINCT store_count) AS stores FROM retail GROUP BY region ORDER BY region",
        "SELECT date_trunc('month', period) AS m, department, SUM(footfall) AS f FROM retail WHERE country = 'France' GROUP BY 1, 2 ORDER BY 1, 2",
    ] {
        let out = psql_csv(server.port, sql).await;
        assert!(out.status.success(), "psql failed on {sql}: {}", stderr(&out));
        let served = stdout(&out);
        let local = query_csv(&dir, sql);
        assert!(served.lines().count() > 1, "{served}");
        assert_eq!(served, local, "{sql}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokio_postgres_text_binary_and_parameters() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    let client = server.client().await;

    // Extended protocol, binary results: the same numbers as the CLI.
    let rows = client.query(BY_REGION, &[]).await.unwrap();
    let local = query_csv(&dir, BY_REGION);
    let expected: Vec<(String, Decimal, i64)> = local
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let got: Vec<(String, Decimal, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, expected);

    // Parameters of several types, bound in binary.
    let sql = "SELECT count(*) AS n, SUM(t.footfall) AS f FROM lake.traffic t JOIN lake.stores s USING (store_id)
               WHERE s.region = $1 AND t.ts >= $2 AND t.department_id <= $3";
    let since = NaiveDateTime::parse_from_str("2025-12-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
    let stmt = client.prepare(sql).await.unwrap();
    let r = client.query_one(&stmt, &[&"Île-de-France", &since, &2i32]).await.unwrap();
    let local = query_csv(
        &dir,
        "SELECT count(*), SUM(t.footfall) FROM lake.traffic t JOIN lake.stores s USING (store_id)
         WHERE s.region = 'Île-de-France' AND t.ts >= TIMESTAMP '2025-12-01 00:00:00' AND t.department_id <= 2",
    );
    let want: Vec<i64> = local.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    let n: i64 = r.get(0);
    let f: i64 = r.get(1);
    assert!(n > 0);
    assert_eq!(vec![n, f], want);

    // A cube query in binary: the ratio of sums, as a float.
    let r = client.query_one("SELECT SUM(conversion) AS c, SUM(transactions) AS t, SUM(footfall) AS f FROM retail WHERE region = $1", &[&"Île-de-France"]).await.unwrap();
    let (c, t, f): (f64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert!((c - t as f64 / f as f64).abs() < 1e-12, "{c} vs {t}/{f}");

    // Timestamps and dates round-trip in binary.
    let r = client.query_one("SELECT ts, month FROM lake.traffic ORDER BY ts LIMIT 1", &[]).await.unwrap();
    let ts: NaiveDateTime = r.get(0);
    let month: chrono::NaiveDate = r.get(1);
    let local = query_csv(&dir, "SELECT ts, month FROM lake.traffic ORDER BY ts LIMIT 1");
    assert_eq!(format!("{},{}", ts.format("%Y-%m-%d %H:%M:%S"), month), local.lines().nth(1).unwrap());

    // The whole table streams through, row for row.
    let total: i64 = client.query_one("SELECT count(*) FROM lake.traffic", &[]).await.unwrap().get(0);
    let all = client.query("SELECT * FROM lake.traffic", &[]).await.unwrap();
    assert_eq!(all.len() as i64, total);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_statements_in_one_message_and_errors_with_sqlstate() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    let client = server.client().await;
    let msgs = client.simple_query("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c").await.unwrap();
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap().to_string()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec![vec!["1".to_string()], vec!["two".to_string(), "3".to_string()]]);
    let completes = msgs.iter().filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))).count();
    assert_eq!(completes, 2);

    for (sql, code) in [
        ("SELECT * FROM lake.nowhere", "42P01"),
        ("SELECT nope FROM lake.stores", "42703"),
        ("SELEC 1", "42601"),
        ("CREATE TABLE t (a INT)", "25006"),
        ("INSERT INTO lake.stores (store_id) VALUES (1)", "25006"),
        ("DROP TABLE lake.stores", "25006"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        // Extended protocol too.
        let e = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(e.as_db_error().unwrap().code().code(), code, "{sql} (extended)");
    }
    let e = client.simple_query("SELECT * FROM lake.nowhere").await.unwrap_err();
    assert!(e.as_db_error().unwrap().hint().unwrap().contains("in schema lake"));
    // The session is still usable after errors.
    let n: i64 = client.query_one("SELECT count(*) FROM lake.stores", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_connection_limit_is_sqlstate_53300() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 1).await;
    let first = server.client().await;
    let err = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await.err().expect("second connection refused");
    assert_eq!(err.as_db_error().expect("an ErrorResponse, not a dropped socket").code().code(), "53300");
    drop(first);
    // Once the first leaves, a new client gets in.
    let mut ok = false;
    for _ in 0..50 {
        if tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 4).await;
    let port = server.port;
    let _c = server.client().await;
    drop(_c);
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

/// COPY … TO STDOUT in its three formats, through psql's `\copy` (simple protocol) and
/// tokio-postgres's `copy_out` (extended protocol): the rows of the cube query equal the
/// hand-written query over the lake, written as PostgreSQL writes them.
#[tokio::test(flavor = "multi_thread")]
async fn copy_out_in_text_csv_and_binary() {
    use futures::{StreamExt, TryStreamExt};
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    let cube = "SELECT region, SUM(revenue) AS revenue, SUM(footfall) AS footfall FROM retail GROUP BY 1 ORDER BY 1";

    // psql's \copy to a file, CSV with a header: the same text as psql's CSV of the lake query.
    let file = fresh_dir("copy-out").join("by_region.csv");
    let out = psql_csv(server.port, &format!("\\copy ({cube}) to '{}' csv header", file.display())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("COPY 3"), "{}", stdout(&out));
    let lake_csv = stdout(&psql_csv(server.port, BY_REGION).await);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), lake_csv);

    let client = server.client().await;
    let copy_text = |sql: String| {
        let client = &client;
        async move {
            let chunks: Vec<bytes::Bytes> = client.copy_out(sql.as_str()).await.unwrap_or_else(|e| panic!("{sql}: {e}")).try_collect().await.unwrap();
            String::from_utf8(chunks.concat()).unwrap()
        }
    };
    // Text: tabs, \N for NULL (stores that never closed).
    let stores = "SELECT store_code, store_name, opened_on, closed_on FROM lake.stores ORDER BY store_id";
    let text = copy_text(format!("COPY ({stores}) TO STDOUT")).await;
    let mut want = String::new();
    for m in client.simple_query(stores).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            let fields: Vec<&str> = (0..r.len()).map(|i| r.get(i).unwrap_or("\\N")).collect();
            want.push_str(&fields.join("\t"));
            want.push('\n');
        }
    }
    assert!(want.contains("\\N"), "{want}");
    assert_eq!(text, want);
    // A table copied whole, by name and column list.
    let by_name = copy_text("COPY lake.stores (store_code, store_name, opened_on, closed_on) TO STDOUT".into()).await;
    let mut a: Vec<&str> = by_name.lines().collect();
    let mut b: Vec<&str> = text.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Every type, over several batches: each value as the text protocol sends it, escaped
    // (COPY writes text values from the columns, not from DataRows: the two must agree).
    let typed = "SELECT t.store_id, t.ts, t.month, t.footfall, SUM(t.units) OVER (PARTITION BY t.store_id) AS units, t.revenue, \
                 t.footfall / 3.0e0 AS third, CAST(t.footfall AS REAL) / 7 AS seventh, t.footfall > 10 AS busy, \
                 s.store_name || chr(9) || '\\' || chr(10) AS name, t.ts - TIMESTAMP '2024-01-01' AS since, CAST(t.ts AS TIME) AS at, \
                 ARRAY[t.store_id, t.footfall] AS pair, CASE WHEN t.footfall > 5 THEN 'x' END AS maybe \
                 FROM lake.traffic t JOIN lake.stores s USING (store_id) CROSS JOIN (VALUES (1), (2), (3)) AS k(n) \
                 ORDER BY t.ts, t.store_id, t.department_id, k.n";
    let text = copy_text(format!("COPY ({typed}) TO STDOUT")).await;
    let mut want = String::new();
    for m in client.simple_query(typed).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            let fields: Vec<String> = (0..r.len())
                .map(|i| r.get(i).map_or("\\N".into(), |v| v.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")))
                .collect();
            want.push_str(&fields.join("\t"));
            want.push('\n');
        }
    }
    assert!(want.lines().count() > 8192, "{} rows: one batch only", want.lines().count());
    assert!(want.contains("\\N") && want.contains("\\t\\\\\\n") && want.contains("{"), "{}", &want[..500]);
    assert_eq!(text, want);
    // CSV options: delimiter, NULL string, forced quotes, header; the empty string is quoted,
    // NULL is not.
    let csv = copy_text("COPY (SELECT 'a;b' AS x, '' AS e, CAST(NULL AS TEXT) AS n, 'plain' AS p) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA', FORCE_QUOTE (p))".into()).await;
    assert_eq!(csv, "x;e;n;p\n\"a;b\";;NA;\"plain\"\n");
    let csv = copy_text("COPY (SELECT '' AS e, CAST(NULL AS TEXT) AS n, 'say \"hi\"' AS q) TO STDOUT (FORMAT csv)".into()).await;
    assert_eq!(csv, "\"\",,\"say \"\"hi\"\"\"\n");

    // Binary: PGCOPY read back with the column types.
    let sql = "COPY (SELECT region, SUM(footfall) AS f FROM retail GROUP BY 1 ORDER BY 1) TO STDOUT (FORMAT binary)";
    let stream = client.copy_out(sql).await.unwrap();
    let rows: Vec<(String, i64)> = tokio_postgres::binary_copy::BinaryCopyOutStream::new(stream, &[tokio_postgres::types::Type::TEXT, tokio_postgres::types::Type::INT8])
        .map(|r| r.map(|r| (r.get::<String>(0), r.get::<i64>(1))))
        .try_collect()
        .await
        .unwrap();
    let lake_rows: Vec<(String, i64)> = client
        .query("SELECT s.region, SUM(t.footfall) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1 ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows, lake_rows);

    // What COPY may not do, with PostgreSQL's SQLSTATEs; the session goes on.
    for (sql, code) in [
        ("COPY lake.stores FROM STDIN", "25006"),
        ("COPY lake.stores TO '/tmp/stores.txt'", "42501"),
        ("COPY lake.stores TO STDOUT (FORMAT parquet)", "22023"),
        ("COPY (SELECT 1 AS a) TO STDOUT (FORMAT csv, FORCE_QUOTE (b))", "42703"),
    ] {
        let e = client.copy_out(sql).await.err().unwrap_or_else(|| panic!("{sql} should fail"));
        assert_eq!(e.code().map(|c| c.code()), Some(code), "{sql}: {e}");
    }
    // Under statement_timeout: a COPY of an endless cross join stops with 57014.
    client.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    let result: Result<Vec<bytes::Bytes>, _> = match client.copy_out("COPY (SELECT a.ts FROM lake.traffic a, lake.traffic b, lake.traffic c) TO STDOUT").await {
        Ok(s) => s.try_collect().await,
        Err(e) => Err(e),
    };
    let e = result.expect_err("the timeout stops the COPY");
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    client.batch_execute("SET statement_timeout = 0").await.unwrap();
    assert_eq!(copy_text("COPY (SELECT 1 AS one) TO STDOUT".into()).await, "1\n");
    server.stop_expecting_failures(&["25006", "42501", "22023", "42703", "57014"]).await;
}
