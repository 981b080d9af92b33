//! The query engine: a DataFusion session over the lake, read-only for clients.
//!
//! The session's catalog is named `lakecube` (the database clients connect to). The lake's
//! Delta tables are in schema `lake`; schema `public` is where the cubes will be served.
//! [`Engine::sql`] plans one statement and returns a stream of record batches, so that results
//! flow to the client batch by batch and memory does not grow with the result.

pub mod pg_functions;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use crate::semantic::provider::CubeTableProvider;
use crate::semantic::query::CubeQuery;
use crate::semantic::{Semantic, measure_fn::MeasureFn, rewrite};
use crate::storage::{Lake, schema};

/// The catalog (database) name clients see.
pub const CATALOG: &str = "lakecube";
/// The schema holding the raw lake tables.
pub const LAKE_SCHEMA: &str = "lake";
/// The schema holding the cube tables.
pub const CUBE_SCHEMA: &str = "public";

/// A shared, read-only query engine over one lake.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    lake: Lake,
    semantic: Arc<Semantic>,
}

/// A statement planned for execution, with the cube queries found in it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: LogicalPlan,
    pub cube_queries: Vec<CubeQuery>,
}

impl Engine {
    /// Opens every table of the lake and compiles the cube definitions (if any) over it.
    /// Tables missing from the lake are an error: a lake is only served complete.
    pub async fn open(lake: Lake, model: Option<&Model>) -> Result<Engine> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx
            .catalog(CATALOG)
            .ok_or_else(|| Error::internal("default catalog missing"))?;
        let lake_schema = Arc::new(MemorySchemaProvider::new());
        catalog
            .register_schema(LAKE_SCHEMA, lake_schema.clone())
            .map_err(Error::from)?;
        // Make the lake's object store known to DataFusion's scans.
        let store = lake.object_store()?;
        let mut store_root = lake.root().clone();
        store_root.set_path("/");
        ctx.runtime_env().register_object_store(&store_root, store);
        let mut missing = Vec::new();
        for name in schema::ALL_TABLES {
            match lake.open_table(name).await? {
                Some(table) => {
                    table.update_datafusion_session(&ctx.state()).map_err(Error::from)?;
                    let provider = table.table_provider().await.map_err(Error::from)?;
                    lake_schema.register_table(name.to_string(), provider).map_err(Error::from)?;
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(Error::lake(format!(
                "the lake at {} has no table {}",
                lake.display(),
                missing.join(", ")
            ))
            .with_hint(format!("create it with `lakecube generate --lake {}`", lake.display())));
        }
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(MeasureFn::new()));
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(pg_functions::PgToChar::new()));
        let semantic = match model {
            Some(m) => Semantic::compile(m, &ctx).await?,
            None => Semantic::default(),
        };
        let public = catalog
            .schema(CUBE_SCHEMA)
            .ok_or_else(|| Error::internal("schema public missing"))?;
        for t in semantic.tables() {
            public
                .register_table(t.name.clone(), Arc::new(CubeTableProvider { table: t.clone() }))
                .map_err(Error::from)?;
        }
        Ok(Engine { ctx, lake, semantic: Arc::new(semantic) })
    }

    pub fn semantic(&self) -> &Semantic {
        &self.semantic
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// What a client statement may do: read only.
    fn client_options() -> SQLOptions {
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
    }

    /// Splits a simple-query message into its statements (PostgreSQL lets clients send
    /// several, separated by `;`).
    pub fn split(&self, sql: &str) -> Result<Vec<String>> {
        use datafusion::sql::parser::DFParser;
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
            .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))?;
        Ok(statements.into_iter().map(|s| s.to_string()).collect())
    }

    /// Plans one SQL statement (with `$n` placeholders allowed) into a logical plan, with
    /// reads of cube tables rewritten into plans over the lake.
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan> {
        Ok(self.plan_with_cubes(sql).await?.plan)
    }

    /// Like [`Engine::plan`], also returning the cube queries the statement became.
    pub async fn plan_with_cubes(&self, sql: &str) -> Result<Planned> {
        let state = self.ctx.state();
        let plan = state.create_logical_plan(sql).await.map_err(Error::from)?;
        Self::client_options().verify_plan(&plan).map_err(read_only_error)?;
        let r = rewrite::rewrite(plan, &self.semantic)?;
        Ok(Planned { plan: r.plan, cube_queries: r.queries })
    }

    /// Runs a planned statement, returning its schema and a stream of batches.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let df = DataFrame::new(self.ctx.state(), plan);
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await.map_err(Error::from)?;
        Ok((schema, stream))
    }

    /// Runs a planned statement. For `EXPLAIN`, the cube queries come first, as rows of
    /// plan_type `cube_query`, before DataFusion's plans over the lake.
    pub async fn execute_planned(&self, planned: Planned) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let is_explain = matches!(planned.plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        if !is_explain || planned.cube_queries.is_empty() {
            return self.execute(planned.plan).await;
        }
        use datafusion::arrow::array::{ArrayRef, StringArray};
        use datafusion::arrow::record_batch::RecordBatch;
        use futures::StreamExt;
        let (schema, mut stream) = self.execute(planned.plan).await?;
        let n = planned.cube_queries.len();
        let kinds = StringArray::from(vec!["cube_query"; n]);
        let texts = StringArray::from(planned.cube_queries.iter().map(|q| q.to_string()).collect::<Vec<_>>());
        let mut batches = vec![Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(kinds) as ArrayRef, Arc::new(texts) as ArrayRef])?)];
        while let Some(b) = stream.next().await {
            batches.push(b);
        }
        let s = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(batches));
        Ok((schema, Box::pin(s)))
    }

    /// Plans and runs one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let planned = self.plan_with_cubes(sql).await?;
        self.execute_planned(planned).await
    }
}

fn read_only_error(e: datafusion::error::DataFusionError) -> Error {
    let msg = e.to_string();
    let what = msg
        .split_once(" not supported")
        .map(|(a, _)| a.trim_start_matches("Error during planning: ").to_string())
        .unwrap_or_else(|| "this statement".to_string());
    Error::new(ErrorKind::ReadOnly, format!("lakecube is read-only for SQL clients: {what} is not allowed"))
        .with_hint("lakecube only answers queries; data enters the lake through `lakecube generate`")
}
