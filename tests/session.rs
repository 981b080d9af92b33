//! Session behaviour on the wire, as PostgreSQL clients depend on it: the transaction status
//! byte, cursors (Tableau's one-message form), Execute row limits and PortalSuspended,
//! SET/SHOW/RESET and the statements pools send, PostgreSQL's column names, cancel requests
//! and statement_timeout, read-only refusals on every path, syntax error positions.

use crate::common;

use common::raw::{Raw, data_rows, kinds, status, texts};
use common::*;
use lakecube::datagen::Preset;
use tokio_postgres::SimpleQueryMessage;

/// The SQLSTATE of a failed tokio-postgres call.
fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("not a server error: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_status_follows_the_block() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let mut c = Raw::connect(server.port, &[]).await;
    assert_eq!(status(&c.simple("SELECT 1").await), 'I');
    assert_eq!(status(&c.simple("BEGIN").await), 'T');
    let r = c.simple("SELECT no_such_member FROM retail").await;
    assert_eq!((texts(&r, b'E'), status(&r)), (vec!["42703".to_string()], 'E'));
    // In a failed block everything but the end of it is refused.
    let r = c.simple("SELECT 1").await;
    assert_eq!((texts(&r, b'E'), status(&r)), (vec!["25P02".to_string()], 'E'));
    // COMMIT of a failed block rolls it back.
    let r = c.simple("COMMIT").await;
    assert_eq!((texts(&r, b'C'), status(&r)), (vec!["ROLLBACK".to_string()], 'I'));

    // psycopg's savepoints: ROLLBACK TO leaves the failed state, the block goes on.
    assert_eq!(status(&c.simple("START TRANSACTION READ ONLY; SAVEPOINT _pg3_1").await), 'T');
    assert_eq!(status(&c.simple("SELECT 1/0").await), 'E');
    let r = c.simple("ROLLBACK TO SAVEPOINT _pg3_1").await;
    assert_eq!((texts(&r, b'C'), status(&r)), (vec!["ROLLBACK".to_string()], 'T'));
    let r = c.simple("SELECT 2; RELEASE SAVEPOINT _pg3_1; COMMIT").await;
    assert_eq!(texts(&r, b'C'), ["SELECT 1", "RELEASE", "COMMIT"]);
    assert_eq!(status(&r), 'I');

    // Outside a block: savepoints and cursors without HOLD are errors, as in PostgreSQL.
    let r = c.simple("SAVEPOINT x").await;
    assert_eq!((texts(&r, b'E'), status(&r)), (vec!["25P01".to_string()], 'I'));
    let r = c.simple("DECLARE c CURSOR FOR SELECT 1").await;
    assert_eq!(texts(&r, b'E'), ["25P01"]);
    // An error in a multi-statement message skips the rest of it.
    let r = c.simple("SELECT 1; SELECT nope; SELECT 3").await;
    assert_eq!(kinds(&r), "TDCEZ");

    // The same through the extended protocol (pgjdbc piggybacks BEGIN on Parse/Bind/Execute).
    for (sql, expect) in [("BEGIN", 'T'), ("SELECT nope", 'E'), ("SELECT 1", 'E'), ("ROLLBACK", 'I')] {
        c.parse("", sql).await;
        c.bind("", "").await;
        c.execute("", 0).await;
        assert_eq!(status(&c.sync().await), expect, "{sql}");
    }
    server.stop().await;
}

/// Tableau (psqlODBC with UseDeclareFetch) reads every result through a cursor, in one
/// simple-query message, then fetches the rest and closes it.
#[tokio::test(flavor = "multi_thread")]
async fn tableau_cursor_session_reads_the_whole_result() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let sql = "SELECT region, department, SUM(revenue) AS revenue FROM retail GROUP BY region, department ORDER BY 1, 2";
    let client = server.client().await;
    let expected: Vec<Vec<Option<String>>> = client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..3).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect();
    assert!(expected.len() > 7, "{}", expected.len());

    let mut c = Raw::connect(server.port, &[]).await;
    let r = c.simple(&format!("BEGIN;declare \"SQL_CUR0x7f\" cursor with hold for {sql};fetch 7 in \"SQL_CUR0x7f\"")).await;
    assert_eq!(texts(&r, b'C'), ["BEGIN", "DECLARE CURSOR", "FETCH 7"]);
    assert_eq!(status(&r), 'T');
    let mut got = data_rows(&r);
    let r = c.simple("fetch 2048 in \"SQL_CUR0x7f\"").await;
    got.extend(data_rows(&r));
    assert_eq!(texts(&r, b'C'), [format!("FETCH {}", expected.len() - 7)]);
    let r = c.simple("fetch 2048 in \"SQL_CUR0x7f\"").await;
    assert_eq!(texts(&r, b'C'), ["FETCH 0"]);
    assert_eq!(got, expected);
    let r = c.simple("close \"SQL_CUR0x7f\";commit").await;
    assert_eq!((texts(&r, b'C'), status(&r)), (vec!["CLOSE CURSOR".to_string(), "COMMIT".to_string()], 'I'));
    assert_eq!(texts(&c.simple("fetch 1 in \"SQL_CUR0x7f\"").await, b'E'), ["34000"]);

    // WITH HOLD outlives its block; a cursor without it closes at COMMIT.
    let r = c.simple(&format!("BEGIN; DECLARE h CURSOR WITH HOLD FOR {sql}; DECLARE n CURSOR FOR {sql}; COMMIT")).await;
    assert_eq!(status(&r), 'I');
    let r = c.simple("MOVE 3 IN h; FETCH NEXT FROM h").await;
    assert_eq!(texts(&r, b'C'), ["MOVE 3", "FETCH 1"]);
    assert_eq!(data_rows(&r), vec![expected[3].clone()]);
    assert_eq!(texts(&c.simple("FETCH 1 FROM n").await, b'E'), ["34000"]);
    // Backward movement is refused with a clear error; the cursor stays usable.
    let r = c.simple("FETCH PRIOR FROM h").await;
    assert_eq!(texts(&r, b'E'), ["0A000"]);
    assert_eq!(data_rows(&c.simple("FETCH FORWARD 1 FROM h").await), vec![expected[4].clone()]);
    assert_eq!(texts(&c.simple("CLOSE ALL").await, b'C'), ["CLOSE CURSOR"]);
    server.stop().await;
}

/// pgjdbc's setFetchSize and node-postgres cursors: Execute with a row limit answers
/// PortalSuspended and the next Execute resumes where it stopped.
#[tokio::test(flavor = "multi_thread")]
async fn execute_row_limits_suspend_and_resume_the_portal() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let mut c = Raw::connect(server.port, &[]).await;
    c.simple("BEGIN").await;
    c.parse("s1", "SELECT store_id, store_code FROM lake.stores ORDER BY store_id").await;
    c.bind("C_1", "s1").await;
    let mut rows = Vec::new();
    let mut ends = String::new();
    loop {
        c.execute("C_1", 2).await;
        c.flush().await;
        loop {
            let m = c.read().await;
            match m.tag {
                b'1' | b'2' => {}
                b'D' => rows.push(m.row()),
                b's' | b'C' => {
                    ends.push(m.tag as char);
                    break;
                }
                other => panic!("unexpected message {}", other as char),
            }
        }
        if ends.ends_with('C') {
            break;
        }
    }
    let all = data_rows(&c.simple("SELECT store_id, store_code FROM lake.stores ORDER BY store_id").await);
    assert_eq!(rows.len(), all.len());
    assert_eq!(rows.concat(), all.concat());
    // Full pages suspend (the portal cannot know it is done until asked again).
    assert_eq!(ends, format!("{}C", "s".repeat(all.len() / 2)));
    assert_eq!(status(&c.sync().await), 'T');
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn set_show_reset_and_pool_resets() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let client = server.client().await;
    let show = |name: &'static str| {
        let client = &client;
        async move {
            let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
            rows.iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap()
        }
    };
    assert_eq!(show("transaction_isolation").await, "read committed");
    assert_eq!(show("TRANSACTION ISOLATION LEVEL").await, "read committed");
    assert_eq!(show("server_version").await, "15.8");
    assert_eq!(show("standard_conforming_strings").await, "on");
    client.batch_execute("SET extra_float_digits = 3; SET search_path TO public, lake").await.unwrap();
    assert_eq!(show("extra_float_digits").await, "3");
    assert_eq!(show("search_path").await, "public, lake");
    let v: String = client.query_one("SELECT current_setting('extra_float_digits')", &[]).await.unwrap().get(0);
    assert_eq!(v, "3");
    let v: String = client.query_one("SELECT current_setting('server_version_num')", &[]).await.unwrap().get(0);
    assert_eq!(v, "150008");
    // What drivers and pools send (Metabase, pgjdbc, asyncpg's pool reset, Npgsql's DISCARD).
    for sql in [
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "SET SESSION TIMEZONE TO 'UTC'",
        "SET application_name = 'PostgreSQL JDBC Driver'",
        "SET ROLE lakecube",
        "SET SESSION AUTHORIZATION DEFAULT",
        "SET client_min_messages TO warning",
        "SET statement_timeout = 0",
        "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
        "DISCARD ALL",
        "DEALLOCATE ALL",
        "SELECT set_config('jit', 'off', false)",
    ] {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(show("extra_float_digits").await, "1", "RESET ALL / DISCARD ALL restore the defaults");
    assert_eq!(show("jit").await, "off");
    let e = client.batch_execute("SET no_such_setting = 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704");
    let e = client.batch_execute("SHOW datestyl").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704");
    assert!(e.as_db_error().unwrap().hint().unwrap().contains("DateStyle"), "{e:?}");
    let e = client.batch_execute("SET datafusion.execution.batch_size = 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let e = client.batch_execute("SET client_encoding = 'LATIN1'").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    assert_eq!(show("client_encoding").await, "UTF8");

    // ParameterStatus reports a changed application_name, as PostgreSQL does.
    let mut c = Raw::connect(server.port, &[("application_name", "probe"), ("extra_float_digits", "2")]).await;
    assert!(texts(&c.startup, b'S').contains(&"application_name=probe".to_string()));
    let r = c.simple("SET application_name = 'Metabase'; SHOW extra_float_digits").await;
    assert!(texts(&r, b'S').contains(&"application_name=Metabase".to_string()), "{r:?}");
    assert_eq!(data_rows(&r), vec![vec![Some("2".to_string())]], "startup parameters are settings");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_are_named_as_postgresql_names_them() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let client = server.client().await;
    let stmt = client
        .prepare(
            "SELECT region, SUM(revenue), count(*), 1, date_trunc('month', period), SUM(units) AS r, \
             CAST(SUM(footfall) AS BIGINT), MEASURE(conversion), version() FROM retail GROUP BY region, 5 LIMIT 1",
        )
        .await
        .unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["region", "sum", "count", "?column?", "date_trunc", "r", "sum", "measure", "version"]);
    // Two columns may share a name, as in PostgreSQL.
    let rows = client.query("SELECT SUM(footfall), SUM(revenue) FROM retail", &[]).await.unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["sum", "sum"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_statement_timeout_stop_streaming_queries() {
    use futures::StreamExt;
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let client = server.client().await;
    let endless = "SELECT generate_series FROM generate_series(1, 10000000000)";

    // A cancel request while rows stream.
    let stream = client.query_raw(endless, Vec::<i64>::new()).await.unwrap();
    futures::pin_mut!(stream);
    let mut seen = 0u64;
    let mut canceled = false;
    while let Some(row) = stream.next().await {
        match row {
            Ok(_) => {
                seen += 1;
                if seen == 1000 {
                    client.cancel_token().cancel_query(tokio_postgres::NoTls).await.unwrap();
                }
            }
            Err(e) => {
                assert_eq!(sqlstate(&e), "57014");
                canceled = true;
                break;
            }
        }
    }
    assert!(canceled && seen >= 1000, "canceled={canceled} after {seen} rows");
    let one: i64 = client.query_one("SELECT CAST(1 AS BIGINT)", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "the session is usable after a cancel");

    // statement_timeout, also while streaming.
    client.batch_execute("SET statement_timeout = '300ms'").await.unwrap();
    let e = client.query(endless, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    assert!(e.as_db_error().unwrap().message().contains("statement timeout"));
    client.batch_execute("RESET statement_timeout").await.unwrap();
    let n: i64 = client.query_one("SELECT count(*) FROM lake.stores", &[]).await.unwrap().get(0);
    assert!(n > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_refused_on_every_path() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let client = server.client().await;
    // COPY to a server file is refused as PostgreSQL refuses it to a user without
    // pg_write_server_files (42501); COPY out to the client is a read (tests/server.rs).
    for (sql, code) in [
        ("INSERT INTO lake.stores (store_id) VALUES (1)", "25006"),
        ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "25006"),
        ("COPY lake.stores TO '/tmp/x.csv'", "42501"),
        ("COPY lake.stores FROM '/tmp/x.csv'", "25006"),
        ("DROP TABLE lake.stores", "25006"),
        ("CREATE LOCAL TEMPORARY TABLE \"#Tableau_1_Connect\" (COL INTEGER) ON COMMIT PRESERVE ROWS", "25006"),
        ("SELECT * INTO TEMPORARY TABLE \"#Tableau_1_1_Connect_CheckSelectIntoCap\" FROM lake.stores", "25006"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), code, "simple: {sql}");
        let e = client.prepare(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), code, "prepared: {sql}");
    }
    client.batch_execute("BEGIN").await.unwrap();
    let e = client.batch_execute("DECLARE c CURSOR FOR DELETE FROM lake.stores").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25006", "cursor");
    client.batch_execute("ROLLBACK").await.unwrap();
    // Syntax errors point at the offending character.
    let e = client.simple_query("SELECT region\nFROM retail WHERE").await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42601");
    assert!(matches!(db.position(), Some(tokio_postgres::error::ErrorPosition::Original(p)) if *p >= 27), "{db:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn arrays_in_text_and_binary() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    // Text: PostgreSQL's {…} form, elements quoted where PostgreSQL quotes them.
    let out = psql_csv(server.port, "SELECT ARRAY['a b', 'c', NULL, '', 'x\"y', 'null'] AS t, ARRAY[1, 2, 3] AS i, current_schemas(true) AS s").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        concat!("t,i,s\n", r#""{""a b"",c,NULL,"""",""x\""y"",""null""}","{1,2,3}","{public,information_schema,pg_catalog}""#, "\n")
    );
    // Binary, with the array types' OIDs.
    let client = server.client().await;
    let row = client.query_one("SELECT ARRAY['a b', NULL, 'c'] AS t, ARRAY[CAST(1 AS BIGINT), 2] AS i", &[]).await.unwrap();
    assert_eq!(row.columns()[0].type_(), &tokio_postgres::types::Type::TEXT_ARRAY);
    assert_eq!(row.columns()[1].type_(), &tokio_postgres::types::Type::INT8_ARRAY);
    let t: Vec<Option<String>> = row.get(0);
    let i: Vec<i64> = row.get(1);
    assert_eq!(t, vec![Some("a b".to_string()), None, Some("c".to_string())]);
    assert_eq!(i, vec![1, 2]);
    server.stop().await;
}

/// An interval as tokio-postgres reads it in binary: (months, days, microseconds).
#[derive(Debug, PartialEq)]
struct Interval(i32, i32, i64);

impl<'a> tokio_postgres::types::FromSql<'a> for Interval {
    fn from_sql(_: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(Interval(months, days, micros))
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::INTERVAL
    }
}

/// Intervals (literals, and `timestamp - timestamp` over the cube) go as PostgreSQL's
/// `interval`: its text form in the default IntervalStyle, and its binary form.
#[tokio::test(flavor = "multi_thread")]
async fn intervals_in_text_and_binary() {
    let server = TestServer::start(&lake(Preset::Tiny), 10).await;
    let sql = "SELECT interval '1 day 2 hours' AS a, interval '14 months' AS b, interval '-1.5 seconds' AS c, \
               max(period) - min(period) AS span FROM retail";
    let out = psql_csv(server.port, sql).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lake_span = psql_csv(server.port, "SELECT max(ts) - min(ts) FROM lake.traffic").await;
    let span = stdout(&lake_span).lines().nth(1).unwrap().to_string();
    assert!(span.contains(" days ") || span.ends_with(" days"), "{span}");
    assert_eq!(stdout(&out), format!("a,b,c,span\n1 day 02:00:00,1 year 2 mons,-00:00:01.5,{span}\n"));
    let client = server.client().await;
    let row = client.query_one(sql, &[]).await.unwrap();
    assert!(row.columns().iter().all(|c| c.type_() == &tokio_postgres::types::Type::INTERVAL));
    assert_eq!(row.get::<_, Interval>(0), Interval(0, 1, 7_200_000_000));
    assert_eq!(row.get::<_, Interval>(1), Interval(14, 0, 0));
    assert_eq!(row.get::<_, Interval>(2), Interval(0, 0, -1_500_000));
    let Interval(months, days, micros) = row.get::<_, Interval>(3);
    assert_eq!(months, 0);
    assert_eq!(span, format!("{days} days {:02}:00:00", micros / 3_600_000_000));
    server.stop().await;
}
