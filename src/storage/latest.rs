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
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

#[derive(Debug)]
pub struct LatestTable {
    table: tokio::sync::Mutex<DeltaTable>,
    /// The table's own object store (prefixed at the table root), for the commit-file check.
    store: Arc<dyn object_store::ObjectStore>,
    /// The provider of the version last seen, and that version.
    current: RwLock<(Option<u64>, Arc<dyn TableProvider>)>,
}

impl LatestTable {
    pub async fn new(table: DeltaTable) -> crate::error::Result<LatestTable> {
        let provider = table.table_provider().await?;
        let version = table.version().map(|v| v as u64);
        let store = table.log_store().object_store(None);
        Ok(LatestTable { table: tokio::sync::Mutex::new(table), store, current: RwLock::new((version, provider)) })
    }

    fn current(&self) -> Arc<dyn TableProvider> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// The provider of the latest committed version. Whether a commit landed is one `head`
    /// of the next commit file (`_delta_log/<version + 1>.json`): cheap on a local disk and one
    /// request on S3; only then is the log read and the provider rebuilt.
    async fn latest(&self) -> Result<Arc<dyn TableProvider>> {
        let (seen, provider) = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(v) = seen {
            let next = deltalake::logstore::commit_uri_from_version(Some(v + 1));
            match object_store::ObjectStoreExt::head(self.store.as_ref(), &next).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(provider),
                Err(e) => return Err(DataFusionError::External(Box::new(e))),
                Ok(_) => {}
            }
        }
        let mut table = self.table.lock().await;
        table.update_incremental(None).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let version = table.version().map(|v| v as u64);
        if version == seen {
            return Ok(provider);
        }
        let provider = table.table_provider().await.map_err(|e| DataFusionError::External(Box::new(e)))?;
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
        self.latest().await?.scan(state, projection, filters, limit).await
    }
}
