//! The rows of a constant statement, kept once it has run.
//!
//! Pools and drivers check a connection with `SELECT 1`, and clients ask `SELECT version()`,
//! `SHOW …`-like constants and the like on every connect: statements over no table whose
//! answer cannot change. The plan cache ([`super::plan_cache`]) spares their planning, but each
//! run still made a physical plan, a task context and a stream of DataFusion's, which was most
//! of their round trip (4× PostgreSQL's for `SELECT 1`, docs/performance.md). The same holds
//! for the catalog statements drivers and BI tools send while browsing (psql's `\dt`, pgjdbc's
//! `getTables`): their rows are made from the engine's tables, fixed for its lifetime. A
//! statement the plan cache keeps that reads no table or only such catalog tables
//! ([`super::plan_cache::answer_is_fixed`]), calls only immutable functions (or the fixed
//! catalog functions) and has no parameters (what [`super::plan_cache::cacheable`] checks)
//! gets a [`ConstantRows`] shared by every
//! session that plans the same text with the same settings: its first run streams as any other
//! and, if its rows are few ([`MAX_BYTES`]), keeps them; later runs send those rows without
//! running DataFusion at all.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{Stream, StreamExt};

/// The most a constant statement's kept rows may take; a larger result is not kept.
pub const MAX_BYTES: usize = 64 * 1024;

/// The most the kept rows of a statement answered from rollups may take (a dashboard's
/// answer: a few hundred rows; the plan cache's 256 entries then keep at most 64 MiB).
pub const ROLLUP_MAX_BYTES: usize = 256 * 1024;

/// A constant statement's rows, once a run has produced them all.
#[derive(Debug)]
pub struct ConstantRows {
    rows: OnceLock<(SchemaRef, Vec<RecordBatch>)>,
    /// The most its rows may take to be kept.
    limit: usize,
}

impl Default for ConstantRows {
    fn default() -> ConstantRows {
        ConstantRows::up_to(MAX_BYTES)
    }
}

impl ConstantRows {
    /// Rows kept if they take at most `limit` bytes.
    pub fn up_to(limit: usize) -> ConstantRows {
        ConstantRows { rows: OnceLock::new(), limit }
    }

    /// The kept rows as a new stream, if a run has kept them.
    pub fn stream(&self) -> Option<(SchemaRef, SendableRecordBatchStream)> {
        let (schema, batches) = self.rows.get()?;
        let batches: Vec<Result<RecordBatch>> = batches.iter().cloned().map(Ok).collect();
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(batches));
        Some((schema.clone(), Box::pin(stream)))
    }

    /// `stream` as it is, keeping its rows here when it ends without an error and they are
    /// few.
    pub fn keep(self: Arc<Self>, schema: SchemaRef, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(Keeping { inner: stream, schema, kept: Some(Vec::new()), bytes: 0, into: self })
    }
}

struct Keeping {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    /// The batches so far; `None` once they are too many or a batch failed.
    kept: Option<Vec<RecordBatch>>,
    bytes: usize,
    into: Arc<ConstantRows>,
}

impl Stream for Keeping {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = futures::ready!(self.inner.poll_next_unpin(cx));
        let this = &mut *self;
        match &next {
            Some(Ok(batch)) => {
                // A batch may be a slice of a larger one (a LIMIT's): its own rows count, and
                // a copy of them is kept, not the buffers it shares.
                this.bytes += rows_size(batch);
                if this.bytes > this.into.limit {
                    this.kept = None;
                } else if let Some(kept) = this.kept.as_mut() {
                    match compact(batch) {
                        Ok(b) => kept.push(b),
                        Err(_) => this.kept = None,
                    }
                }
            }
            Some(Err(_)) => this.kept = None,
            None => {
                if let Some(kept) = this.kept.take() {
                    // Another session may have kept the same rows first: either is right.
                    let _ = this.into.rows.set((this.schema.clone(), kept));
                }
            }
        }
        Poll::Ready(next)
    }
}

/// The bytes of a batch's own rows (of a slice: the slice's, not its buffers').
fn rows_size(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or_else(|_| c.get_array_memory_size())).sum()
}

/// `batch` with buffers of its own: a slice's rows copied out of the buffers it shares.
fn compact(batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.get_array_memory_size() <= 2 * rows_size(batch) {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| crate::semantic::rollup::sets::copied(c.as_ref(), 0, c.len()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

impl RecordBatchStream for Keeping {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use futures::TryStreamExt;

    use super::ConstantRows;

    fn stream_of(batches: Vec<datafusion::error::Result<RecordBatch>>, schema: &datafusion::arrow::datatypes::SchemaRef) -> datafusion::execution::SendableRecordBatchStream {
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(batches)))
    }

    #[tokio::test]
    async fn rows_are_kept_once_a_run_ends() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let rows = Arc::new(ConstantRows::default());
        assert!(rows.stream().is_none());
        let mut first = rows.clone().keep(schema.clone(), stream_of(vec![Ok(batch.clone())], &schema));
        // Not kept until the stream has ended.
        assert_eq!(first.try_next().await.unwrap().unwrap(), batch);
        assert!(rows.stream().is_none());
        assert!(first.try_next().await.unwrap().is_none());
        let (_, again) = rows.stream().expect("kept");
        assert_eq!(again.try_collect::<Vec<_>>().await.unwrap(), vec![batch]);
    }

    #[tokio::test]
    async fn failed_or_large_results_are_not_kept() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let rows = Arc::new(ConstantRows::default());
        let failed = vec![Err(datafusion::error::DataFusionError::Execution("boom".into()))];
        let _ = rows.clone().keep(schema.clone(), stream_of(failed, &schema)).try_collect::<Vec<_>>().await;
        assert!(rows.stream().is_none());
        let large = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![7; 20_000]))]).unwrap();
        let all = rows.clone().keep(schema.clone(), stream_of(vec![Ok(large)], &schema)).try_collect::<Vec<_>>().await.unwrap();
        assert_eq!(all[0].num_rows(), 20_000);
        assert!(rows.stream().is_none());
    }

    #[tokio::test]
    async fn a_slice_of_a_large_batch_is_kept_as_its_own_rows() {
        // A LIMIT's output: 10 rows sharing the buffers of 100,000.
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let large = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..100_000))]).unwrap();
        let rows = Arc::new(ConstantRows::default());
        let _ = rows.clone().keep(schema.clone(), stream_of(vec![Ok(large.slice(5, 10))], &schema)).try_collect::<Vec<_>>().await.unwrap();
        let (_, kept) = rows.stream().expect("ten rows are kept");
        let kept: Vec<RecordBatch> = kept.try_collect().await.unwrap();
        assert_eq!(kept[0].num_rows(), 10);
        assert!(kept[0].get_array_memory_size() < 1024, "{}", kept[0].get_array_memory_size());
        assert_eq!(kept[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0), 5);
    }
}
