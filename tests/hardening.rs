//! No client can take the server down: each test replays a reproduction of the 2026-12
//! security review (findings #1, #2, #6, #7, #10, #11, #12, #17, #18, #24) against a real
//! server, and checks that the offending client gets a PostgreSQL error with its SQLSTATE
//! while the server, and everyone else on it, carries on.

use crate::common;

use std::time::Duration;

use common::raw::Raw;
use common::*;
use lakecube::datagen::Preset;
use lakecube::engine::Options;
use lakecube::engine::memory::MemoryConfig;
use lakecube::frontend::connection::ConnectionLimits;
use lakecube::frontend::server::{Limits, Security};
use tokio::io::AsyncReadExt;

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no ErrorResponse: {e}"))
}

/// The statements that aborted the process (format's width, allocations sized by the
/// client), panicked the connection (dates out of chrono's range) or overflowed.
#[tokio::test(flavor = "multi_thread")]
async fn statements_that_took_the_server_down_are_errors() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    let client = server.client().await;
    for (sql, sqlstate) in [
        // Aborted the whole server ("memory allocation of … failed").
        ("SELECT format('%2000000000s', 'x')", "54000"),
        ("SELECT format('%1000000000000s', 'x')", "22023"),
        ("SELECT lpad('x', 2000000000)", "54000"),
        ("SELECT rpad('x', 2000000000, 'y')", "54000"),
        ("SELECT repeat('ab', 1500000000)", "54000"),
        ("SELECT array_repeat(1, 2000000000)", "54000"),
        ("SELECT range(1, 4000000000)", "54000"),
        // Panicked the connection task while encoding.
        ("SELECT arrow_cast(2147483647, 'Date32')", "22008"),
        ("SELECT arrow_cast(-2147483648, 'Date32')", "22008"),
    ] {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&e), sqlstate, "{sql}: {e}");
        let e = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(code(&e), sqlstate, "{sql} (extended): {e}");
    }
    let e = client.simple_query("SELECT lpad('x', 2000000000)").await.unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("requested length too large"), "{e}");
    // The ends of int8 (abs() of i64::MIN panicked in debug builds).
    let row = client.query_one("SELECT pg_size_pretty(-9223372036854775808)", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "-8388608 TB");
    // The same connection goes on.
    let n: i64 = client.query_one("SELECT count(*) FROM lake.stores", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    server.stop().await;
}

/// A query past its share of the memory pool fails with 53200; a client querying beside it
/// sees no error, and the server stays up.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_over_its_memory_share_gets_53200_and_others_carry_on() {
    let dir = lake(Preset::Tiny);
    let memory = MemoryConfig { query_limit: 32 << 20, ..MemoryConfig::with_limit(128 << 20) };
    let server = TestServer::start_with(&dir, Limits::default(), Security::default(), Options { memory }).await;
    let hostile = server.client().await;
    let dashboard = server.client().await;
    let expected = query_csv(&dir, "SELECT store_id, SUM(footfall) FROM lake.traffic GROUP BY 1 ORDER BY 1");
    let attack = tokio::spawn(async move {
        let mut codes = Vec::new();
        for sql in [
            // An aggregate that cannot spill, over a cross join (64 M rows).
            "SELECT array_agg(a.ts) FROM lake.traffic a, lake.traffic b",
            "SELECT string_agg(CAST(a.ts AS TEXT), ',') FROM lake.traffic a, lake.traffic b",
        ] {
            let e = hostile.simple_query(sql).await.expect_err(sql);
            assert!(e.as_db_error().is_some_and(|d| d.message().contains("out of memory")), "{sql}: {e}");
            codes.push(code(&e));
        }
        codes
    });
    for _ in 0..10 {
        let rows = dashboard.query("SELECT store_id, SUM(footfall) FROM lake.traffic GROUP BY 1 ORDER BY 1", &[]).await.unwrap();
        let got: Vec<String> = rows.iter().map(|r| format!("{},{}", r.get::<_, i32>(0), r.get::<_, i64>(1))).collect();
        assert_eq!(got, expected.lines().skip(1).collect::<Vec<_>>());
    }
    assert_eq!(attack.await.unwrap(), ["53200", "53200"]);
    assert_eq!(server_reserved_after(&dashboard).await, 3, "the server still answers");
    server.stop().await;
}

async fn server_reserved_after(client: &tokio_postgres::Client) -> i64 {
    client.query_one("SELECT count(*) FROM lake.stores", &[]).await.unwrap().get(0)
}

fn small_limits(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        max_startups: 8,
        connection: ConnectionLimits { startup_timeout: Duration::from_secs(1), max_message_size: 1 << 20, ..Default::default() },
        ..Default::default()
    }
}

/// Silent sockets hold no slot and are closed after the startup timeout; slots go to
/// authenticated clients only, and a CancelRequest gets through when every slot is taken.
#[tokio::test(flavor = "multi_thread")]
async fn silent_clients_hold_no_slot_and_cancel_works_when_full() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start_with(&dir, small_limits(2), Security::default(), Options::default()).await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(Raw::socket(server.port).await);
    }
    // Both slots are still free for real clients.
    let a = server.client().await;
    let b = server.client().await;
    let e = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await.err().expect("a third client is refused");
    assert_eq!(code(&e), "53300");
    // The server is full; a runaway query can still be cancelled.
    let token = b.cancel_token();
    let runaway = tokio::spawn(async move {
        b.simple_query("SELECT count(*) FROM lake.traffic a, lake.traffic b, lake.traffic c WHERE a.footfall + b.footfall + c.footfall = -1").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), runaway).await.expect("cancelled in time").unwrap().unwrap_err();
    assert_eq!(code(&e), "57014");
    // The silent ones were closed at the startup timeout.
    for mut s in silent {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed by the server").unwrap_or(0);
        assert_eq!(n, 0, "a silent client gets nothing but the close");
    }
    assert_eq!(server_reserved_after(&a).await, 3);
    server.stop().await;
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend(((body.len() + 4) as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Reads to the close, returning the SQLSTATE and message of the ErrorResponse before it.
async fn fatal_error(raw: &mut Raw) -> (String, String) {
    let mut last = None;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), raw.next()).await.expect("the server answers") {
        if m.tag == b'E' {
            last = Some((m.text(), m.error_field(b'M').unwrap_or_default()));
        }
    }
    last.expect("an ErrorResponse before the close")
}

/// Malformed extended-protocol messages, and a message over `max_message_size`, end the
/// connection with 08P01 (pgwire's decoders panicked or read into the next frame).
#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_messages_are_protocol_violations() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start_with(&dir, small_limits(10), Security::default(), Options::default()).await;
    let bind_2_formats_3_values = {
        let mut b = b"\0s\0".to_vec();
        b.extend([0, 2, 0, 0, 0, 0]);
        b.extend([0, 3]);
        for _ in 0..3 {
            b.extend(1i32.to_be_bytes());
            b.push(b'1');
        }
        b.extend([0, 0]);
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(b'B', &bind_2_formats_3_values), "2 parameter formats but 3 parameters"),
        // Parse announcing 100 parameter types, carrying none.
        (frame(b'P', b"\0\0\0\x64"), "invalid \"P\" message format"),
        // Bind whose value length runs past the message.
        (frame(b'B', b"\0s\0\0\0\0\x01\0\x0f\x42\x40x\0\0"), "invalid \"B\" message format"),
        (frame(b'Q', &vec![b'x'; 2 << 20]), "message too long"),
        (frame(b'Y', b""), "invalid frontend message type"),
    ];
    for (bytes, expected) in cases {
        let mut raw = Raw::connect(server.port, &[]).await;
        raw.parse("s", "SELECT $1::int + $2::int + $3::int").await;
        raw.write_raw(&bytes).await;
        let (sqlstate, message) = fatal_error(&mut raw).await;
        assert_eq!(sqlstate, "08P01", "{expected}: {message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }
    // Still serving.
    let client = server.client().await;
    assert_eq!(server_reserved_after(&client).await, 3);
    server.stop().await;
}

/// Sessions idle for longer than their timeout are closed, as PostgreSQL does: 57P05 outside
/// a transaction block, 25P03 inside one (the latter from the server's default).
#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_are_closed_at_their_timeout() {
    let dir = lake(Preset::Tiny);
    let mut limits = small_limits(10);
    limits.session_defaults.insert("idle_in_transaction_session_timeout".into(), "300ms".into());
    let server = TestServer::start_with(&dir, limits, Security::default(), Options::default()).await;
    let mut idle = Raw::connect(server.port, &[]).await;
    idle.simple("SET idle_session_timeout = '300ms'").await;
    let mut in_block = Raw::connect(server.port, &[]).await;
    let show = in_block.simple("SHOW idle_in_transaction_session_timeout").await;
    assert_eq!(common::raw::data_rows(&show), vec![vec![Some("300ms".to_string())]]);
    in_block.simple("BEGIN").await;
    // A busy session is not idle: a statement longer than the timeout is fine.
    let mut busy = Raw::connect(server.port, &[]).await;
    busy.simple("SET idle_session_timeout = '300ms'").await;
    let rows = busy.simple("SELECT count(*) FROM lake.traffic a, lake.traffic b WHERE a.footfall > b.footfall + 50").await;
    assert_eq!(common::raw::data_rows(&rows).len(), 1);
    assert_eq!(fatal_error(&mut idle).await.0, "57P05");
    assert_eq!(fatal_error(&mut in_block).await.0, "25P03");
    server.stop().await;
}

/// Before authentication a message may take a few KiB: a 1 GiB frame sent during SCRAM is
/// refused at its header (pgwire buffered it whole). An unknown user goes through the same
/// SCRAM exchange as a known one (a mock salt) and fails at the proof.
#[tokio::test(flavor = "multi_thread")]
async fn before_authentication_messages_are_small_and_users_are_not_enumerable() {
    let dir = lake(Preset::Tiny);
    let users = std::collections::BTreeMap::from([("analyst".to_string(), lakecube::frontend::auth::Verifier::new("pencil").to_text())]);
    let security = Security { users: lakecube::frontend::auth::Users::parse(&users).unwrap(), ..Default::default() };
    let server = TestServer::start_with(&dir, small_limits(10), security, Options::default()).await;
    // The server's first answer to a SASLInitialResponse, for a known and an unknown user.
    let mut replies = Vec::new();
    for user in ["analyst", "nobody"] {
        let mut raw = Raw::start(server.port, user).await;
        let sasl = raw.next().await.expect("AuthenticationSASL");
        assert_eq!((sasl.tag, &sasl.body[..4]), (b'R', &10i32.to_be_bytes()[..]));
        let first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend((first.len() as i32).to_be_bytes());
        body.extend_from_slice(first);
        raw.send(b'p', &body).await;
        let reply = raw.next().await.expect("an answer");
        replies.push((reply.tag, i32::from_be_bytes(reply.body[..4].try_into().unwrap())));
        // While authenticating, a 1 GiB message is refused at its header.
        let mut q = frame(b'Q', b"");
        q[1..5].copy_from_slice(&0x3ffffff0i32.to_be_bytes());
        raw.write_raw(&q).await;
        let (sqlstate, message) = fatal_error(&mut raw).await;
        assert_eq!(sqlstate, "08P01", "{message}");
        assert!(message.contains("before authentication"), "{message}");
    }
    assert_eq!(replies, [(b'R', 11), (b'R', 11)], "both get SASLContinue");
    server.stop().await;
}

/// statement_timeout covers FETCH (it ran unbounded) and counts each Execute of a paged
/// portal afresh (a slow reader's later pages used to time out on the first Execute's clock);
/// a session's open cursors are capped.
#[tokio::test(flavor = "multi_thread")]
async fn statement_timeout_covers_cursors_and_counts_each_page_afresh() {
    let dir = lake(Preset::Tiny);
    let server = TestServer::start(&dir, 10).await;
    let client = server.client().await;
    client
        .batch_execute(
            "SET statement_timeout = '500ms'; BEGIN; DECLARE c CURSOR FOR SELECT count(*) FROM lake.traffic a, lake.traffic b, lake.traffic c WHERE a.footfall + b.footfall + c.footfall = -1",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let e = client.simple_query("FETCH ALL FROM c").await.unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped at the timeout, not at the end");
    client.batch_execute("ROLLBACK").await.unwrap();

    // Pages of 500 rows, 300 ms apart, under a 400 ms timeout: each page is its own Execute.
    let mut raw = Raw::connect(server.port, &[]).await;
    raw.simple("SET statement_timeout = '400ms'").await;
    raw.parse("", "SELECT * FROM lake.traffic ORDER BY ts, store_id, department_id").await;
    raw.bind("", "").await;
    let mut rows = 0;
    for _ in 0..4 {
        raw.execute("", 500).await;
        raw.flush().await;
        loop {
            let m = raw.read().await;
            assert_ne!(m.tag, b'E', "page failed: {:?}", m.error_field(b'M'));
            if m.tag == b'D' {
                rows += 1;
            }
            if m.tag == b's' {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(rows, 2000);
    raw.sync().await;

    // At most 64 cursors per session.
    let mut declare = String::from("BEGIN;");
    for i in 0..64 {
        declare.push_str(&format!("DECLARE c{i} CURSOR FOR SELECT 1;"));
    }
    client.batch_execute(&declare).await.unwrap();
    let e = client.simple_query("DECLARE one_more CURSOR FOR SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "54000", "{e}");
    server.stop().await;
}
