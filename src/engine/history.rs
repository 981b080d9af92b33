//! `lakecube.lake_history`: the lake's change history, one row per Delta commit of each lake
//! table, newest first: version, time, operation (`WRITE` from `lakecube generate`, `MERGE`
//! from an ingest batch, …), the ingest's source, kind and files (with their SHA-256) where
//! the commit carries them ([`crate::storage::PROVENANCE_KEY`]), the rows it wrote, and
//! Delta's operation parameters and metrics as JSON. Read from the tables' Delta logs when
//! the table is read, so it is never behind the lake.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::storage::{Lake, schema};

pub fn schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        text("operation"),
        text("source"),
        text("kind"),
        text("files"),
        Field::new("rows", DataType::Int64, true),
        text("parameters"),
        text("metrics"),
    ]))
}

/// The rows a commit wrote, from Delta's operation metrics: inserted plus updated for a
/// MERGE, the rows added for a WRITE.
fn rows_written(metrics: Option<&serde_json::Value>) -> Option<i64> {
    let m = metrics?;
    let n = |k: &str| m.get(k).and_then(serde_json::Value::as_i64);
    match (n("num_target_rows_inserted").or(n("numTargetRowsInserted")), n("num_target_rows_updated").or(n("numTargetRowsUpdated"))) {
        (None, None) => n("num_added_rows").or(n("numOutputRows")).or(n("numAddedRows")),
        (i, u) => Some(i.unwrap_or(0) + u.unwrap_or(0)),
    }
}

/// One commit of one lake table, as a row of `lake_history`.
struct Commit {
    table: String,
    version: i64,
    time: Option<i64>,
    operation: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    files: Option<String>,
    rows: Option<i64>,
    parameters: Option<String>,
    metrics: Option<String>,
}

/// Every lake table's commits, newest first within each table.
pub async fn batch(lake: &Lake) -> Result<RecordBatch> {
    let mut commits = Vec::new();
    for name in schema::ALL_TABLES {
        let Some(table) = lake.open_table(name).await? else { continue };
        let latest = table.version().unwrap_or_default() as i64;
        let infos: Vec<_> = table.history(None).try_collect().await.map_err(Error::from)?;
        for (i, info) in infos.into_iter().enumerate() {
            let provenance = info.info.get(crate::storage::PROVENANCE_KEY);
            let text = |k: &str| provenance.and_then(|p| p.get(k)).and_then(|v| v.as_str()).map(str::to_string);
            let files = provenance.and_then(|p| p.get("files")).and_then(|f| f.as_array()).map(|files| {
                let name = |f: &serde_json::Value, k: &str| f.get(k).and_then(|p| p.as_str()).unwrap_or("?").to_string();
                files.iter().map(|f| format!("{} ({})", name(f, "path"), name(f, "sha256"))).collect::<Vec<_>>().join(", ")
            });
            let metrics = info.info.get("operationMetrics");
            commits.push(Commit {
                table: name.to_string(),
                version: latest - i as i64,
                time: info.timestamp,
                operation: info.operation.clone(),
                source: text("source"),
                kind: text("kind"),
                files,
                rows: rows_written(metrics),
                parameters: info.operation_parameters.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                metrics: metrics.map(|m| m.to_string()),
            });
        }
    }
    let texts = |f: &dyn Fn(&Commit) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from(commits.iter().map(f).collect::<Vec<_>>())) };
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            texts(&|c| Some(c.table.clone())),
            Arc::new(Int64Array::from(commits.iter().map(|c| c.version).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from(commits.iter().map(|c| c.time).collect::<Vec<_>>())),
            texts(&|c| c.operation.clone()),
            texts(&|c| c.source.clone()),
            texts(&|c| c.kind.clone()),
            texts(&|c| c.files.clone()),
            Arc::new(Int64Array::from(commits.iter().map(|c| c.rows).collect::<Vec<_>>())),
            texts(&|c| c.parameters.clone()),
            texts(&|c| c.metrics.clone()),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::rows_written;

    #[test]
    fn rows_written_from_merge_and_write_metrics() {
        let merge = serde_json::json!({"num_target_rows_inserted": 3, "num_target_rows_updated": 2, "num_source_rows": 5});
        assert_eq!(rows_written(Some(&merge)), Some(5));
        assert_eq!(rows_written(Some(&serde_json::json!({"num_added_rows": 7}))), Some(7));
        assert_eq!(rows_written(None), None);
    }
}
