//! Runs every `tests/slt/*.slt` file (sqllogictest format) against the retail cube over the
//! `tiny` lake, in-process. `LAKECUBE_SLT_COMPLETE=1` rewrites the expected results from the
//! current output (review the diff before committing).

mod common;

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;
use lakecube::datagen::Preset;
use lakecube::engine::Engine;
use sqllogictest::{DBOutput, DefaultColumnType};

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
        let fail = |e: lakecube::error::Error| DbError(format!("[{}] {}", e.sqlstate(), e.message));
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

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lake = common::lake(Preset::Tiny);
    let mut files: Vec<PathBuf> = std::fs::read_dir("tests/slt")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let complete = std::env::var("LAKECUBE_SLT_COMPLETE").is_ok_and(|v| v == "1");
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let lake = lake.clone();
        let res: Result<(), String> = rt.block_on(async {
            let mut runner = sqllogictest::Runner::new(move || {
                let lake = lake.clone();
                async move { Ok(Db { engine: common::engine(&lake).await }) }
            });
            if complete {
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
                runner.run_file_async(file).await.map_err(|e| e.display(false).to_string())
            }
        });
        match res {
            Ok(()) => {
                passed += 1;
                println!("slt {} ... ok", file.display());
            }
            Err(e) => {
                failed += 1;
                println!("slt {} ... FAILED\n{e}", file.display());
            }
        }
    }
    println!("\nsqllogictest: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}
