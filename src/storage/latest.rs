//! A lake table served at its latest committed version: every scan first brings the Delta
//! table up to date (reading only the commits added since), so a running server sees a batch
//! that `lakecube ingest` committed on its next query, without a restart. A scan reads one
//! version from start to end (Delta snapshots), so a query never sees part of a batch.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use deltalake::DeltaTable;

#[derive(Debug)]
pub struct LatestTable {
    table: tokio::sync::Mutex<DeltaTable>,
    /// The table's own object store (prefixed at the table root), for the commit-file check.
    store: Arc<dyn object_store::ObjectStore>,
    /// The provider of the version last seen, and that version.
    current: RwLock<(Option<u64>, Arc<dyn TableProvider>)>,
    /// The bytes of the data files of the version last seen.
    bytes: std::sync::atomic::AtomicU64,
}

/// Whether commit `version` of the Delta table in `store` under `prefix` exists: one `head`
/// of its commit file (cheap on a local disk, one request on S3).
pub async fn commit_exists(store: &dyn object_store::ObjectStore, prefix: &object_store::path::Path, version: u64) -> object_store::Result<bool> {
    let file = deltalake::logstore::commit_uri_from_version(Some(version));
    let path = prefix.parts().chain(file.parts()).collect::<object_store::path::Path>();
    match object_store::ObjectStoreExt::head(store, &path).await {
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
        Ok(_) => Ok(true),
    }
}

/// The bytes of a Delta table's data files at its loaded version (0 when not loaded).
pub fn file_bytes(table: &DeltaTable) -> u64 {
    table.snapshot().map(|s| s.log_data().iter().map(|f| f.size().max(0) as u64).sum()).unwrap_or(0)
}

impl LatestTable {
    pub async fn new(table: DeltaTable) -> crate::error::Result<LatestTable> {
        let provider = table.table_provider().await?;
        let version = table.version().map(|v| v as u64);
        let store = table.log_store().object_store(None);
        let bytes = std::sync::atomic::AtomicU64::new(file_bytes(&table));
        Ok(LatestTable { table: tokio::sync::Mutex::new(table), store, current: RwLock::new((version, provider)), bytes })
    }

    /// The bytes of the table's data files at the version last read (the size psql's `\dt+`
    /// shows; a commit made since shows once a query has read the table).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn current(&self) -> Arc<dyn TableProvider> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// The provider of the latest committed version. Whether a commit landed is one `head`
    /// of the next commit file (`_delta_log/<version + 1>.json`): cheap on a local disk and one
    /// request on S3; only then is the log read and the provider rebuilt.
    async fn latest(&self) -> Result<Arc<dyn TableProvider>> {
        let (seen, provider) = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(v) = seen
            && !commit_exists(self.store.as_ref(), &object_store::path::Path::default(), v + 1).await.map_err(|e| DataFusionError::External(Box::new(e)))?
        {
            return Ok(provider);
        }
        let mut table = self.table.lock().await;
        table.update_incremental(None).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let version = table.version().map(|v| v as u64);
        if version == seen {
            return Ok(provider);
        }
        let provider = table.table_provider().await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.bytes.store(file_bytes(&table), std::sync::atomic::Ordering::Relaxed);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (version, provider.clone());
        Ok(provider)
    }
}

#[async_trait]
impl TableProvider for LatestTable {
    fn schema(&self) -> SchemaRef {
        self.current().schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.current().supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.latest().await?.scan(state, projection, filters, limit).await?;
        Ok(KeepLimit::over(plan))
    }
}

/// Stands over deltalake 1.1's metadata-only scan (`DeltaScanMetaExec`, for a read of no
/// column: `SELECT 1 FROM lake.traffic LIMIT 1`), which tells DataFusion's `LimitPushdown` that
/// limits pass through it but has nowhere to pass them: the limit would vanish and every row
/// come back. This node does not let limits through, so the limit stays above it. Anything
/// else is returned as it is.
#[derive(Debug)]
struct KeepLimit {
    input: Arc<dyn ExecutionPlan>,
}

impl KeepLimit {
    fn over(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        if plan.children().is_empty() && plan.supports_limit_pushdown() && plan.with_fetch(Some(1)).is_none() {
            Arc::new(KeepLimit { input: plan })
        } else {
            plan
        }
    }
}

impl DisplayAs for KeepLimit {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "KeepLimit")
    }
}

impl ExecutionPlan for KeepLimit {
    fn name(&self) -> &str {
        "KeepLimit"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(KeepLimit { input })),
            _ => Err(DataFusionError::Internal("KeepLimit takes one input".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(&self, input_stats: &[Arc<Statistics>], _args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        Ok(input_stats[0].clone())
    }
}
