//! Panics found by a fuzzer, not by a user: property tests (proptest) that feed the parts a
//! client or an export reaches with mutated and random input, and fail on any panic.
//!
//! Each target starts from real inputs (BI tools' statements, protocol frames, export lines)
//! and mutates them: bytes flipped, inserted, deleted, spliced from another seed. A short run
//! is part of the suite (`FUZZ_CASES`, 64 per target); a long one is a documented command:
//! `PROPTEST_CASES=20000 cargo test --release --test integration fuzz::` (docs/performance.md
//! has no figure for it: it finds bugs, it measures nothing). A failing case is shrunk and
//! printed, and kept in `proptest-regressions/` for the next runs.

use crate::common;

use std::sync::OnceLock;

use common::*;
use futures::StreamExt;
use lakecube::datagen::Preset;
use lakecube::engine::Engine;
use proptest::prelude::*;

/// Cases per target in the suite; PROPTEST_CASES overrides it for a long run.
const FUZZ_CASES: u32 = 64;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(FUZZ_CASES);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// An edit of a seed: where (a fraction of its length), what, and a byte.
#[derive(Debug, Clone)]
enum Edit {
    Flip(f64, u8),
    Insert(f64, u8),
    Delete(f64, usize),
    Duplicate(f64, usize),
    Splice(f64, usize, f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(a, b)| Edit::Flip(a, b)),
        (0.0..1.0f64, prop_oneof![any::<u8>(), Just(0u8), Just(b'\''), Just(b'('), Just(b'"'), Just(b'%'), Just(0xff)])
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (0.0..1.0f64, 1usize..16).prop_map(|(a, n)| Edit::Delete(a, n)),
        (0.0..1.0f64, 1usize..64).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (0.0..1.0f64, 0usize..64, 0.0..1.0f64).prop_map(|(a, i, b)| Edit::Splice(a, i, b)),
    ]
}

/// A seed mutated by a few edits (splices take a part of another seed).
fn mutate(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    (0..seeds.len(), prop::collection::vec(edit(), 0..6)).prop_map(move |(i, edits)| {
        let mut v = seeds[i].to_vec();
        for e in edits {
            let at = |f: f64, v: &Vec<u8>| ((v.len() as f64) * f) as usize;
            match e {
                Edit::Flip(f, b) if !v.is_empty() => {
                    let i = at(f, &v).min(v.len() - 1);
                    v[i] ^= b;
                }
                Edit::Insert(f, b) => {
                    let i = at(f, &v);
                    v.insert(i, b);
                }
                Edit::Delete(f, n) => {
                    let i = at(f, &v);
                    let end = (i + n).min(v.len());
                    v.drain(i..end);
                }
                Edit::Duplicate(f, n) => {
                    let i = at(f, &v);
                    let part: Vec<u8> = v[i..(i + n).min(v.len())].to_vec();
                    v.splice(i..i, part);
                }
                Edit::Splice(f, other, g) => {
                    let o = seeds[other % seeds.len()];
                    let from = ((o.len() as f64) * g) as usize;
                    let i = at(f, &v);
                    v.splice(i..i, o[from..].iter().copied().take(32));
                }
                _ => {}
            }
        }
        v
    })
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Statements as BI tools send them: catalog queries, cube queries, session statements.
const SQL: &[&[u8]] = &[
    b"SELECT region, SUM(footfall) AS f, SUM(conversion) FROM retail WHERE period >= '2025-11-01' GROUP BY region ORDER BY 2 DESC LIMIT 10",
    b"SELECT \"retail\".\"department\" AS \"department\", SUM(\"retail\".\"revenue\") AS \"sum:revenue:ok\" FROM \"public\".\"retail\" \"retail\" GROUP BY 1",
    b"SELECT date_trunc('month', period) AS m, COUNT(DISTINCT store_count), AVG(average_basket) FROM retail GROUP BY 1 HAVING SUM(footfall) > 0",
    b"SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.relkind IN ('r','v') AND a.attnum > 0",
    b"SELECT * FROM (SELECT store, MEASURE(footfall) FROM retail GROUP BY store) t WHERE t.store LIKE 'P%' OFFSET 2",
    b"SELECT s.region, SUM(t.revenue) FROM lake.traffic t JOIN lake.stores s USING (store_id) WHERE t.ts BETWEEN $1 AND $2 GROUP BY 1",
    b"SELECT format('%I.%I', 'public', 'retail')::regclass, to_char(period, 'YYYY-MM-DD HH24:MI'), EXTRACT(dow FROM period) FROM retail LIMIT 3",
    b"WITH x AS (SELECT store_code, SUM(units) u FROM retail GROUP BY 1) SELECT * FROM x UNION ALL SELECT 'all', SUM(u) FROM x",
    b"SET extra_float_digits = 3; SHOW transaction isolation level; SELECT current_setting('server_version_num')",
    b"SELECT CASE WHEN SUM(footfall) > 0 THEN SUM(transactions)::float / SUM(footfall) END FROM retail WHERE department IN ('Shoes', 'Toys')",
];

/// An engine over the tiny lake, opened once for all cases.
fn engine() -> &'static (tokio::runtime::Runtime, Engine) {
    static ENGINE: OnceLock<(tokio::runtime::Runtime, Engine)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = lake(Preset::Tiny);
        let engine = rt.block_on(common::engine(&dir));
        (rt, engine)
    })
}

proptest! {
    #![proptest_config(config())]

    /// The compatibility rewrites and the cube rewrite: any statement plans or fails cleanly.
    #[test]
    fn sql_planning_never_panics(sql in mutate(SQL).prop_map(text)) {
        let (rt, engine) = engine();
        let info = lakecube::pg::settings::SessionInfo::default();
        for stmt in lakecube::pg::parse::split_statements(&sql).unwrap_or_default() {
            let _ = rt.block_on(engine.plan_sql(&stmt, &info));
        }
    }

    /// to_char templates (translated to chrono's, whose formatter panics on a bad item).
    #[test]
    fn to_char_templates_never_panic(template in mutate(&[b"YYYY-MM-DD HH24:MI:SS", b"Day, DD Month YYYY", b"IYYY-IW ID Q", b"\"FY\"YY MON dd"]).prop_map(text)) {
        let (rt, engine) = engine();
        let literal = template.replace('\'', "''");
        let sql = format!("SELECT to_char(TIMESTAMP '2025-11-02 13:45:06', '{literal}'), to_char(DATE '2025-11-02', '{literal}')");
        // A panic in an execution task comes back as an error, not as a panic here.
        let outcome = rt.block_on(async {
            let (_, stream) = engine.sql(&sql).await?;
            for batch in stream.collect::<Vec<_>>().await {
                batch.map_err(lakecube::error::Error::from)?;
            }
            Ok::<_, lakecube::error::Error>(())
        });
        if let Err(e) = outcome {
            prop_assert!(!e.message.to_lowercase().contains("panic"), "{}", e.message);
        }
    }
}

/// Frontend frames: startup, SSL and cancel requests, and every message type, whole or cut.
const FRAMES: &[&[u8]] = &[
    b"\0\0\0\x08\x04\xd2\x16\x2f",
    b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02",
    b"\0\0\0\x1e\0\x03\0\0user\0lakecube\0database\0x\0\0",
    b"Q\0\0\0\x0dSELECT 1\0",
    b"P\0\0\0\x16s\0SELECT $1\0\0\x01\0\0\0\x17",
    b"B\0\0\0\x15\0s\0\0\x01\0\x01\0\x01\0\0\0\x011\0\x01\0\x01",
    b"D\0\0\0\x07S\0s\0",
    b"E\0\0\0\x09\0\0\0\0\x0a",
    b"C\0\0\0\x06P\0",
    b"p\0\0\0\x23SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc",
    b"S\0\0\0\x04H\0\0\0\x04X\0\0\0\x04",
    b"d\0\0\0\x08abcdc\0\0\0\x04f\0\0\0\x09oops\0",
];

proptest! {
    #![proptest_config(config())]

    /// What [`lakecube::frontend::framing::check_frame`] lets through, pgwire decodes without
    /// panicking and without reading past the frame.
    #[test]
    fn checked_frames_decode_without_panics(bytes in mutate(FRAMES), sasl in any::<bool>()) {
        use lakecube::frontend::framing::check_frame;
        use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
        let mut at = 0;
        let mut typed = bytes.first().is_some_and(|b| b.is_ascii_alphabetic());
        let mut first_password = true;
        while at < bytes.len() {
            let offset = usize::from(typed);
            let Some(len) = bytes.get(at + offset..at + offset + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize) else { break };
            if len < 4 || at + offset + len > bytes.len() {
                break;
            }
            let kind = typed.then(|| bytes[at]);
            let body = &bytes[at + offset + 4..at + offset + len];
            if check_frame(kind, body, sasl && kind == Some(b'p') && first_password).is_err() {
                break;
            }
            let frame = &bytes[at..at + offset + len];
            let mut buf = bytes::BytesMut::from(frame);
            let mut ctx = DecodeContext::new(pgwire::messages::ProtocolVersion::PROTOCOL3_0);
            ctx.awaiting_frontend_ssl = !typed;
            ctx.awaiting_frontend_startup = !typed;
            let _ = PgWireFrontendMessage::decode(&mut buf, &ctx);
            if kind.is_some() {
                prop_assert!(buf.is_empty() || kind == Some(b'p'), "decoded past or short of a checked {:?} frame", kind.map(|k| k as char));
            }
            if kind == Some(b'p') {
                first_password = false;
            }
            if kind.is_none() && body.len() >= 4 && u32::from_be_bytes(body[..4].try_into().unwrap()) >> 16 == 3 {
                typed = true;
            }
            at += offset + len;
        }
    }
}

/// Export lines as door sensors and tills write them.
const EXPORTS: &[&[u8]] = &[
    b"Store;Department;Date;Hour;Entries\r\nFR-PAR-001;D01;02/11/2025;11:00;5\r\nFR-PAR-001;D01;2025-11-02;11;\"7\"\r\n",
    b"store_code,department_code,interval_start,count_in\nES-MAD-001,D03,2025-11-20T10:00:00,12\n",
    b"magasin\trayon\tdate\tentrees\nFR-LYS-002\tD02\t45962,5\t1 234\n",
    b"{\"store\": \"FR-PAR-001\", \"department\": \"D01\", \"at\": \"2025-11-02 11:00\", \"count\": 5}\n{\"store\": 1}\n",
    b"[{\"ticket\": \"T1\", \"amount\": \"12,50\", \"units\": 2}, {\"ticket\": null}]",
];

/// Counts what a reader hands over, and reads every field of every record.
struct Counting(usize);

impl lakecube::ingest::record::Sink for Counting {
    fn headers(&mut self, _headers: &[String]) -> lakecube::error::Result<()> {
        Ok(())
    }
    fn record(&mut self, _line: u64, fields: &dyn lakecube::ingest::record::Fields) -> lakecube::error::Result<()> {
        for i in 0..fields.len() {
            let _ = fields.get(i);
        }
        self.0 += 1;
        Ok(())
    }
    fn unreadable(&mut self, _line: u64, _reason: String) -> lakecube::error::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    /// The CSV and JSON readers, and every field parser, on mutated exports.
    #[test]
    fn export_readers_and_value_parsers_never_panic(bytes in mutate(EXPORTS), delimiter in prop_oneof![Just(b','), Just(b';'), Just(b'\t')]) {
        use lakecube::ingest::fields::parse_value;
        use lakecube::ingest::kinds::FieldType;
        use lakecube::ingest::read::{csv_records, json_records};
        let _ = csv_records(&bytes[..], delimiter, true, "fuzz.csv", &mut Counting(0));
        let _ = json_records(&bytes[..], "fuzz.json", &mut Counting(0));
        let text = String::from_utf8_lossy(&bytes);
        for value in text.split([',', ';', '\t', '\n', '"']) {
            for ty in [FieldType::Text, FieldType::Integer, FieldType::Decimal, FieldType::Timestamp, FieldType::Date] {
                for format in [None, Some("%d/%m/%Y %H:%M"), Some("excel"), Some("%Q%")] {
                    let _ = parse_value(value, ty, format);
                }
            }
        }
    }
}
