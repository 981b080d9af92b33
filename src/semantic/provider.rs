//! The table clients see for a cube or view: its schema (dimensions and measures, with
//! descriptions in field metadata). Reads of it are rewritten before execution, so `scan`
//! is only reached if a statement escaped the rewrite, and then it fails loudly.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::CubeTable;

#[derive(Debug)]
pub struct CubeTableProvider {
    pub table: Arc<CubeTable>,
}

#[async_trait]
impl TableProvider for CubeTableProvider {
    fn schema(&self) -> SchemaRef {
        self.table.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(format!(
            "cube table `{}` was read without being rewritten into a cube query",
            self.table.name
        )))
    }
}
