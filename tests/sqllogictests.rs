//! Runs every `tests/slt/*.slt` file (sqllogictest format) against the retail cube over the
//! `tiny` lake, in-process: one test per file, named after it. Each file runs twice: with the
//! engine's defaults, and with every statement at background priority (engine::priority: on
//! the background pool, through its channel), which must answer the same. A run reports every
//! failing record of a file, not only the first. An error reads `[SQLSTATE] message`, followed
//! by ` HINT: hint` when it has one, so `statement error` / `query error` regexes can assert all
//! three. `LAKECUBE_SLT_COMPLETE=1` rewrites the
//! expected results from the current output (review the diff before committing):
//! `LAKECUBE_SLT_COMPLETE=1 cargo test --test integration sqllogictests`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use lakecube::datagen::Preset;
use lakecube::engine::Engine;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common;

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

struct Db {
    engine: Engine,
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let fail = |e: lakecube::error::Error| {
            let hint = e.hint.as_deref().map(|h| format!(" HINT: {h}")).unwrap_or_default();
            DbError(format!("[{}] {}{hint}", e.sqlstate(), e.message))
        };
        let (schema, mut stream) = self.engine.sql(sql).await.map_err(fail)?;
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let mut rows = Vec::new();
        while let Some(b) = stream.next().await {
            rows.extend(common::batch_rows(&b.map_err(|e| fail(e.into()))?));
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "lakecube"
    }
}

/// One test per `.slt` file; [`every_slt_file_has_a_test`] keeps the list complete.
macro_rules! slt_files {
    ($($name:ident),* $(,)?) => {
        const SLT_FILES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                run_file(Path::new(concat!("tests/slt/", stringify!($name), ".slt"))).await;
            }
        )*
    };
}

slt_files!(catalog, errors, filters, functions, measures, time, typing);

#[test]
fn every_slt_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir("tests/slt")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = SLT_FILES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "add each tests/slt/*.slt file to slt_files! in tests/sqllogictests.rs");
}

async fn run_file(file: &Path) {
    let complete = std::env::var("LAKECUBE_SLT_COMPLETE").is_ok_and(|v| v == "1");
    run_file_with(file, lakecube::engine::Options::default(), complete).await;
    if !complete {
        let mut background = lakecube::engine::Options::default();
        background.priority.background_rows = Some(0);
        run_file_with(file, background, false).await;
    }
}

async fn run_file_with(file: &Path, options: lakecube::engine::Options, complete: bool) {
    let options_rows = options.priority.background_rows;
    let lake: PathBuf = tokio::task::spawn_blocking(|| common::lake(Preset::Tiny)).await.unwrap();
    let mut runner = sqllogictest::Runner::new(move || {
        let (lake, options) = (lake.clone(), options.clone());
        async move { Ok(Db { engine: common::engine_with(&lake, options).await }) }
    });
    let res = if complete {
        runner
            .update_test_file(
                file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        // Every record runs and every failure is reported, not only the first (as DataFusion's
        // runner does).
        match sqllogictest::parse_file::<DefaultColumnType>(file) {
            Ok(records) => {
                let mut failures = Vec::new();
                for record in records {
                    if let Err(e) = runner.run_async(record).await {
                        failures.push(e.display(false).to_string());
                    }
                }
                if failures.is_empty() { Ok(()) } else { Err(format!("{} failing records:\n{}", failures.len(), failures.join("\n"))) }
            }
            Err(e) => Err(e.to_string()),
        }
    };
    if let Err(e) = res {
        panic!("{} (background_rows {:?}):\n{e}", file.display(), options_rows);
    }
}
