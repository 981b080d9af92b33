//! The PostgreSQL conformance suite (issue 15): `tests/conformance/*.slt`, sqllogictest files of
//! the PostgreSQL behaviour BI tools rely on (literal typing, numeric, strings, dates, NULL
//! ordering, casts, conditional expressions, column names, SQLSTATEs), whose every expected
//! output was produced by a real PostgreSQL 15. See docs/conformance.md.
//!
//! Both tests drive the files over the wire with tokio-postgres's simple query protocol, so
//! values are compared exactly as PostgreSQL prints them in text (NULL as `NULL`, the empty
//! string as `(empty)`), columns joined by one space, nothing trimmed or collapsed. Each
//! statement is first described (Parse/Describe, never executed) for its result types, which
//! are compared too: `I` integer (int2/int4/int8), `R` float4/float8/numeric, `T` any other.
//! An error reads `SQLSTATE message` and is expected by its SQLSTATE: `query error (22012)`.
//! A query whose SQL starts with the line `-- names` gets its column names as a first row.
//!
//! - [`lakecube_matches_postgresql_15`] runs the files against a lakecube server over the tiny
//!   lake (label `lakecube`). A record lakecube does not match yet is marked `skipif lakecube`
//!   under a one-line comment `# lakecube: <what differs>`; it counts as a known difference
//!   (and is run anyway, to tell when it starts to match). Any other mismatch fails the test.
//!   It prints `conformance: N records, M match PostgreSQL 15, K known differences`.
//! - [`files_match_postgresql_15`] runs every record of the files against a throwaway
//!   PostgreSQL 15 cluster (label `postgres`) and fails if one disagrees, so the files cannot
//!   drift from PostgreSQL. With `LAKECUBE_CONFORMANCE_REGENERATE=1` it rewrites the expected
//!   outputs (results, types, SQLSTATEs) from PostgreSQL's answers instead:
//!   `LAKECUBE_CONFORMANCE_REGENERATE=1 cargo test --test integration conformance::files`.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use lakecube::datagen::Preset;
use sqllogictest::{
    Condition, DBOutput, DefaultColumnType, ExpectedError, Normalizer, QueryExpect, Record, RecordOutput, Runner, StatementExpect,
};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::common::{self, LocalPostgres, TestServer};

const DIR: &str = "tests/conformance";
/// The label of lakecube's records, and of its known differences (`skipif lakecube`).
const LAKECUBE: &str = "lakecube";
/// The first line of a query whose column names are its first result row.
const NAMES: &str = "-- names";

/// The suite's files, in name order.
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {DIR}/*.slt files");
    files
}

/// An error as the suite compares it: its SQLSTATE first.
#[derive(Debug)]
struct WireError {
    sqlstate: Option<String>,
    message: String,
}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => WireError { sqlstate: Some(db.code().code().to_string()), message: db.message().to_string() },
            None => WireError { sqlstate: None, message: e.to_string() },
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.sqlstate.as_deref().unwrap_or("-----"), self.message)
    }
}

impl std::error::Error for WireError {}

/// One connection to a PostgreSQL-speaking server, as the runner's database.
struct Wire {
    client: tokio_postgres::Client,
    engine: &'static str,
}

impl Wire {
    async fn connect(url: String, engine: &'static str) -> Result<Wire, WireError> {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Wire { client, engine })
    }
}

/// A result column's type as the files write it.
fn column_type(t: &Type) -> DefaultColumnType {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 => DefaultColumnType::Integer,
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

/// A value as the files write it: PostgreSQL's text, `NULL`, `(empty)` for the empty string,
/// line breaks and tabs escaped so that one row stays one line.
fn cell(v: Option<&str>) -> String {
    match v {
        None => "NULL".into(),
        Some("") => "(empty)".into(),
        Some(s) => s.replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t"),
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Wire {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        // The result types, from a Describe; the statement runs only once, in the simple query.
        let described = self.client.prepare(sql).await;
        let messages = self.client.simple_query(sql).await?;
        let statement = described.map_err(|e| {
            let e = WireError::from(e);
            WireError { message: format!("Parse/Describe failed where the simple query did not: {}", e.message), ..e }
        })?;
        let types: Vec<DefaultColumnType> = statement.columns().iter().map(|c| column_type(c.type_())).collect();
        let mut names = None;
        let mut rows = Vec::new();
        let mut count = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => names = Some(cols.iter().map(|c| c.name().to_string()).collect::<Vec<_>>()),
                SimpleQueryMessage::Row(r) => rows.push((0..r.len()).map(|i| cell(r.get(i))).collect()),
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        let Some(names) = names else { return Ok(DBOutput::StatementComplete(count)) };
        if sql.trim_start().starts_with(NAMES) {
            rows.insert(0, names);
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.engine
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.sqlstate.clone()
    }
}

/// Rows equal to the expected lines exactly: no trimming, no folding of spaces.
fn exact_validator(_: Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(row, line)| row.join(" ") == *line)
}

/// A runner of one file's records over a fresh connection to `url`, with this label.
fn runner(url: &str, label: &'static str) -> Runner<Wire, impl sqllogictest::MakeConnection<Conn = Wire> + use<>> {
    let url = url.to_string();
    let mut runner = Runner::new(move || Wire::connect(url.clone(), label));
    runner.add_label(label);
    runner.with_validator(exact_validator);
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner
}

fn parse(file: &PathBuf) -> Vec<Record<DefaultColumnType>> {
    sqllogictest::parse_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A statement or query record's conditions and location; `None` for the others.
fn tested(record: &Record<DefaultColumnType>) -> Option<(&[Condition], String)> {
    match record {
        Record::Statement { conditions, loc, .. } | Record::Query { conditions, loc, .. } => Some((conditions, loc.to_string())),
        _ => None,
    }
}

/// The record without its conditions (a known difference, run anyway).
fn unconditional(mut record: Record<DefaultColumnType>) -> Record<DefaultColumnType> {
    if let Record::Statement { conditions, .. } | Record::Query { conditions, .. } = &mut record {
        conditions.clear();
    }
    record
}

#[tokio::test(flavor = "multi_thread")]
async fn lakecube_matches_postgresql_15() {
    let lake = tokio::task::spawn_blocking(|| common::lake(Preset::Tiny)).await.unwrap();
    let server = TestServer::start(&lake, 10).await;
    let (mut records, mut matched, mut known) = (0, 0, Vec::new());
    let (mut failures, mut now_matching, mut unexplained) = (Vec::new(), Vec::new(), Vec::new());
    for file in files() {
        let mut runner = runner(&server.url(), LAKECUBE);
        let mut comment: Option<String> = None;
        for record in parse(&file) {
            let Some((conditions, loc)) = tested(&record) else {
                match &record {
                    Record::Comment(lines) => comment = lines.last().map(|l| l.trim().to_string()),
                    Record::Condition(_) => {}
                    _ => comment = None,
                }
                runner.run_async(record).await.unwrap();
                continue;
            };
            records += 1;
            let skipped = conditions.iter().any(|c| match c {
                Condition::SkipIf { label } => label == LAKECUBE,
                Condition::OnlyIf { label } => label != LAKECUBE,
            });
            if skipped {
                match comment.take().and_then(|c| c.strip_prefix("lakecube:").map(|why| why.trim().to_string())) {
                    Some(why) => known.push((loc.clone(), why)),
                    None => unexplained.push(loc.clone()),
                }
                if runner.run_async(unconditional(record)).await.is_ok() {
                    now_matching.push(loc);
                }
            } else {
                comment = None;
                match runner.run_async(record).await {
                    Ok(_) => matched += 1,
                    Err(e) => failures.push(e.display(false).to_string()),
                }
            }
        }
    }
    server.stop().await;
    // The known differences by cause (a comment's text up to its first `: `), the bug list.
    let mut causes: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (loc, why) in &known {
        let (cause, _) = why.split_once(": ").unwrap_or((why.as_str(), ""));
        causes.entry(cause).or_default().push(loc.as_str());
    }
    println!("known differences, by cause:");
    for (cause, locs) in &causes {
        println!("  {} × {cause}: {}", locs.len(), locs.join(", "));
    }
    if !now_matching.is_empty() {
        println!("these known differences now match PostgreSQL 15 (remove their `skipif lakecube`):\n  {}", now_matching.join("\n  "));
    }
    // The summary is written to stderr itself, past the test harness's capture, so that every
    // run of the suite shows it; the lists above show with `--nocapture` or when the test fails.
    let _ = writeln!(
        std::io::stderr(),
        "conformance: {records} records, {matched} match PostgreSQL 15, {} known differences",
        known.len() + unexplained.len()
    );
    let mut problems = Vec::new();
    if !unexplained.is_empty() {
        problems.push(format!("a `skipif lakecube` record needs a `# lakecube: <what differs>` line right above it: {}", unexplained.join(", ")));
    }
    if !failures.is_empty() {
        problems.push(format!(
            "{} records do not match PostgreSQL 15 (fix lakecube, or mark a known difference with `skipif lakecube` under `# lakecube: <what differs>`):\n{}",
            failures.len(),
            failures.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(matched + known.len(), records);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_match_postgresql_15() {
    let regenerate = std::env::var("LAKECUBE_CONFORMANCE_REGENERATE").is_ok_and(|v| v == "1");
    let pg = tokio::task::spawn_blocking(LocalPostgres::start).await.unwrap();
    let mut failures = Vec::new();
    for file in files() {
        let mut runner = runner(&pg.url(), "postgres");
        if regenerate {
            let mut text = String::new();
            for record in parse(&file) {
                let output = runner.apply_record(record.clone()).await;
                let record = regenerated(record, &output);
                text.push_str(&format!("{record}\n"));
            }
            std::fs::write(&file, format!("{}\n", text.trim_end())).unwrap();
            continue;
        }
        for record in parse(&file) {
            if let Err(e) = runner.run_async(unconditional(record)).await {
                failures.push(e.display(false).to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} records of {DIR} disagree with PostgreSQL 15 (LAKECUBE_CONFORMANCE_REGENERATE=1 rewrites them from its answers; review the diff):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The record with PostgreSQL's answer as its expected output: results and types as the
/// runner printed them, an error as its SQLSTATE.
fn regenerated(record: Record<DefaultColumnType>, output: &RecordOutput<DefaultColumnType>) -> Record<DefaultColumnType> {
    let error = match output {
        RecordOutput::Statement { error: Some(e), .. } | RecordOutput::Query { error: Some(e), .. } => Some(e),
        _ => None,
    };
    if let Some(e) = error {
        let sqlstate = e.downcast_ref::<WireError>().and_then(|w| w.sqlstate.clone()).unwrap_or_else(|| panic!("not an ErrorResponse: {e}"));
        let expected = ExpectedError::SqlState(sqlstate);
        return match record {
            Record::Statement { loc, conditions, connection, sql, retry, .. } => {
                Record::Statement { loc, conditions, connection, sql, expected: StatementExpect::Error(expected), retry }
            }
            Record::Query { loc, conditions, connection, sql, retry, .. } => {
                Record::Query { loc, conditions, connection, sql, expected: QueryExpect::Error(expected), retry }
            }
            other => other,
        };
    }
    sqllogictest::update_record_with_output(
        &record,
        output,
        " ",
        exact_validator,
        sqllogictest::default_normalizer,
        sqllogictest::strict_column_validator,
    )
    .unwrap_or(record)
}
