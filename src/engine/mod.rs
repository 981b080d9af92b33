//! The query engine: a DataFusion session over the lake, read-only for clients.
//!
//! The session's catalog is named `lakecube` (the database clients connect to). The lake's
//! Delta tables are in schema `lake`; schema `public` is where the cubes are served;
//! `pg_catalog` and `information_schema` describe them as PostgreSQL would ([`catalog`]).
//! [`Engine::plan_sql`] turns one statement into a plan over the lake (`sql` parses it the
//! PostgreSQL way and applies the session's settings); [`Engine::execute_planned`] runs it as a
//! stream of record batches, so that results flow to the client batch by batch and memory does
//! not grow with the result.

pub mod fast_time;
pub mod memory;
pub mod constant;
pub mod access;
pub mod history;
pub mod plan_cache;
pub mod priority;
pub mod rollups;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext, SessionState};
use datafusion::logical_expr::LogicalPlan;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use crate::pg::{self, bounded, catalog, functions as pg_functions, settings::SessionInfo};
use crate::semantic::provider::CubeTableProvider;
use crate::semantic::query::CubeQuery;
use crate::semantic::{Semantic, measure_fn::MeasureFn, rewrite};
use crate::storage::{Lake, schema};

/// The session setting that turns rollups off (`SET lakecube.rollups = off`).
pub const ROLLUPS_SETTING: &str = "lakecube.rollups";
/// The session setting that turns the reuse of answers from rollups off
/// (`SET lakecube.answer_reuse = off`).
pub const ANSWER_REUSE_SETTING: &str = "lakecube.answer_reuse";

/// The catalog (database) name clients see.
pub const CATALOG: &str = "lakecube";
/// The schema holding the raw lake tables.
pub const LAKE_SCHEMA: &str = "lake";
/// The schema holding the cube tables.
pub const CUBE_SCHEMA: &str = "public";
/// The schema of the server's own tables: the audit log (`query_log`) and the lake's change
/// history (`lake_history`), only for roles granted `audit`.
pub const ADMIN_SCHEMA: &str = "lakecube";

/// A shared, read-only query engine over one lake.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    lake: Lake,
    semantic: Arc<Semantic>,
    parser: Arc<datafusion_pg_catalog::sql::PostgresCompatibilityParser>,
    roles: catalog::Roles,
    plan_cache: Arc<plan_cache::PlanCache>,
    memory: memory::Memory,
    priorities: priority::Priorities,
    rollups: Arc<rollups::Rollups>,
    /// The lake tables the rollups follow ([`plan_cache::answer_is_fixed_in_epoch`]).
    followed: Arc<Vec<Arc<dyn datafusion::catalog::TableProvider>>>,
    /// Who may read what ([`access`]); `None` until users are configured: every session
    /// reads everything (loopback trust).
    access: Arc<access::Access>,
    audit: Arc<crate::audit::AuditLog>,
}

/// The bytes of Parquet a statement's scans read (the lake's and the rollups'), for the
/// audit log: summed from the plan's `bytes_scanned` metrics when its stream ends or is
/// dropped.
#[derive(Debug, Clone, Default)]
pub struct Meter(Arc<std::sync::atomic::AtomicU64>);

impl Meter {
    pub fn bytes(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn over(&self, plan: Arc<dyn ExecutionPlan>, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(Reading { plan: Some(plan), meter: self.clone(), stream })
    }
}

/// A running plan's stream, whose scans' bytes go into a meter when it ends (or is dropped
/// before).
struct Reading {
    plan: Option<Arc<dyn ExecutionPlan>>,
    meter: Meter,
    stream: SendableRecordBatchStream,
}

impl Reading {
    fn count(&mut self) {
        fn scanned(plan: &dyn ExecutionPlan) -> u64 {
            let own = plan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")).map_or(0, |v| v.as_usize() as u64);
            own + plan.children().into_iter().map(|c| scanned(c.as_ref())).sum::<u64>()
        }
        if let Some(plan) = self.plan.take() {
            self.meter.0.fetch_add(scanned(plan.as_ref()), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl futures::Stream for Reading {
    type Item = datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.stream.as_mut().poll_next(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.count();
        }
        polled
    }
}

impl datafusion::physical_plan::RecordBatchStream for Reading {
    fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.count();
    }
}

/// How an engine is set up beyond its lake and cubes.
#[derive(Debug, Clone)]
pub struct Options {
    pub memory: memory::MemoryConfig,
    pub priority: priority::PriorityConfig,
    /// Where statements and logins are audited (default: memory only).
    pub audit: Arc<crate::audit::AuditLog>,
}

impl Default for Options {
    /// The defaults for this machine ([`memory::MemoryConfig::for_machine`]).
    fn default() -> Self {
        Options { memory: memory::MemoryConfig::for_machine(), priority: priority::PriorityConfig::default(), audit: Arc::default() }
    }
}

impl Options {
    /// The options the configured limits give: each limit where the config sets it, this
    /// machine's default where it does not.
    pub fn from_limits(limits: &crate::config::Limits) -> Options {
        let bytes = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
        let mut memory = match limits.memory_limit {
            Some(b) => memory::MemoryConfig::with_limit(bytes(b)),
            None => memory::MemoryConfig::for_machine(),
        };
        if let Some(b) = limits.query_memory_limit {
            memory.query_limit = bytes(b);
        }
        if let Some(b) = limits.spill_limit {
            memory.spill_limit = b;
        }
        memory.spill_dir = limits.spill_dir.clone();
        let mut priority = priority::PriorityConfig::default();
        if let Some(rows) = limits.background_rows {
            priority.background_rows = rows;
        }
        Options { memory, priority, audit: Arc::default() }
    }
}

/// A statement planned for execution, with the cube queries found in it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: LogicalPlan,
    pub cube_queries: Vec<CubeQuery>,
    /// The result's column names as PostgreSQL gives them, where they differ from the plan's.
    pub names: Option<Vec<String>>,
    /// Settings the statement changes for its session (`set_config(…)`).
    pub setting_changes: pg::rewrite::SettingChanges,
    /// The rollups the plan reads (ids), each of whose partitions it takes as current.
    pub rollups: Vec<String>,
    /// The rollups' epoch it was planned in (the plan cache keys it by it).
    pub rollups_epoch: u64,
    /// Whether `plan` has been through DataFusion's logical optimizer already (plans that
    /// [`plan_cache`] keeps are stored optimized).
    pub optimized: bool,
    /// The result's types once DataFusion's analyzer has coerced them, for a plan not yet
    /// optimized: an unanalyzed plan's schema can differ (`CASE WHEN … THEN 1 ELSE 2.5 END`
    /// is bigint there and double once coerced), and a Describe must announce the types the
    /// rows are sent in.
    pub analyzed: Option<SchemaRef>,
    /// For a statement the plan cache keeps that reads no table (`SELECT 1`): its rows once
    /// a run has kept them, shared by every session that plans the same text ([`constant`]).
    pub constant: Option<Arc<constant::ConstantRows>>,
}

impl Planned {
    /// The statement with values for its `$n` placeholders (none: as it is).
    pub fn bind(mut self, values: Option<datafusion::common::ParamValues>) -> Result<Planned> {
        if let Some(values) = values {
            self.plan = self.plan.with_param_values(values).map_err(Error::from)?;
            // The values' types may change the result's.
            self.analyzed = None;
        }
        Ok(self)
    }

    /// The result schema clients see: the plan's, with PostgreSQL's column names.
    pub fn schema(&self) -> SchemaRef {
        let arrow = self.analyzed.clone().unwrap_or_else(|| Arc::new(self.plan.schema().as_arrow().clone()));
        rename(arrow, self.names.as_deref())
    }
}

/// `schema` with its fields renamed (Arrow allows the duplicate names PostgreSQL allows).
fn rename(schema: SchemaRef, names: Option<&[String]>) -> SchemaRef {
    match names {
        Some(names) if names.len() == schema.fields().len() => {
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .zip(names)
                .map(|(f, n)| Arc::new(f.as_ref().clone().with_name(n.clone())))
                .collect();
            Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
        }
        _ => schema,
    }
}

impl Engine {
    /// Opens every table of the lake and compiles the cube definitions (if any) over it.
    /// Tables missing from the lake are an error: a lake is only served complete.
    pub async fn open(lake: Lake, model: Option<&Model>) -> Result<Engine> {
        Self::open_with(lake, model, Options::default()).await
    }

    /// [`Engine::open`] with these options (memory pool and spill limits, CPU priority).
    pub async fn open_with(lake: Lake, model: Option<&Model>, options: Options) -> Result<Engine> {
        let memory = memory::Memory::new(options.memory)?;
        let priorities = priority::Priorities::new(options.priority)?;
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false);
        // A decimal literal (`1.5`, `0.25`) is numeric, as in PostgreSQL, not float8: exact in
        // sums and comparisons with numeric columns, `pg_typeof(1.5)` is numeric.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        // The cube rewrite is the first analyzer rule, so that no plan runs with a cube read
        // left in it; it gets the cubes once they are compiled over this session.
        let cube_rewrite = Arc::new(rewrite::CubeRewrite::default());
        // PostgreSQL's literal typing and arithmetic rules go around DataFusion's coercion.
        let analyzer_rules = pg::analyze::around_coercion(vec![cube_rewrite.clone()], datafusion::optimizer::Analyzer::new().rules);
        let state = pg::analyze::with_planners(
            datafusion::execution::SessionStateBuilder::new()
                .with_config(config)
                .with_runtime_env(memory.runtime())
                .with_default_features()
                .with_analyzer_rules(analyzer_rules)
                // Plans the policy barrier (semantic::barrier).
                .with_query_planner(Arc::new(crate::semantic::barrier::Planner)),
        );
        // An encrypted lake's scans get its keys (storage::crypto).
        let state = lake.with_keys(state).build();
        let ctx = SessionContext::new_with_state(state);
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
        let mut lake_tables = std::collections::HashMap::new();
        for name in schema::ALL_TABLES {
            match lake.open_table(name).await? {
                Some(table) => {
                    table.update_datafusion_session(&ctx.state()).map_err(Error::from)?;
                    // Served at its latest version: commits by `lakecube ingest` show on the
                    // next query.
                    let provider = Arc::new(crate::storage::latest::LatestTable::new(table).await?);
                    lake_tables.insert(name.to_string(), provider.clone());
                    lake_schema.register_table(name.to_string(), provider).map_err(Error::from)?;
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(lake.missing_tables(&missing));
        }
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(MeasureFn::new()));
        ctx.add_optimizer_rule(Arc::new(fast_time::FastDatePart));
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
        let descriptions = access::descriptions(semantic.tables().map(|t| t.as_ref()));
        let roles = catalog::Roles::default();
        let lake_providers = lake_tables.clone();
        // Relation sizes (psql's `\dt+`) are the lake tables' files; cubes are computed.
        let sizes: catalog::RelationSizes = Arc::new(move |schema: &str, table: &str| {
            (schema == LAKE_SCHEMA).then(|| lake_tables.get(table).map(|t| t.bytes())).flatten()
        });
        let admin_schema = Arc::new(MemorySchemaProvider::new());
        let audit = options.audit.clone();
        let log = audit.clone();
        admin_schema
            .register_table("query_log".into(), catalog::live(move || log.batch().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))))?)
            .map_err(Error::from)?;
        let history_lake = lake.clone();
        let history = catalog::live_async(history::schema(), move || {
            let lake = history_lake.clone();
            Box::pin(async move { history::batch(&lake).await.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))) })
        });
        admin_schema.register_table("lake_history".into(), history).map_err(Error::from)?;
        // Only in the catalogs of users whose role is granted `audit` (engine::access): not
        // in the engine's own, which loopback sessions without users read, so that BI tools'
        // table lists show the cubes and the lake, not the server's own tables.
        catalog::install(&ctx, CATALOG, &descriptions, roles.clone(), sizes.clone(), None).await?;
        pg_functions::register(&ctx);
        pg::array::register(&ctx);
        // Last, so that every function it caps is registered (ours and DataFusion's).
        bounded::bound_functions(&ctx);
        let parser = Arc::new(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new());
        let plan_cache = Arc::new(plan_cache::PlanCache::new(plan_cache::DEFAULT_ENTRIES));
        // An eighth of the memory pool, at most 512 MiB, may keep rollups decoded in memory
        // (the dashboards' rollups are small; the largest are read from their files).
        let hot_budget = (memory.config().limit / 8).min(512 << 20);
        let rollups = Arc::new(rollups::Rollups::new(lake.clone(), semantic.rollups().to_vec(), ctx.clone(), memory.runtime().memory_pool.clone(), hot_budget)?);
        let followed = lake_providers
            .into_iter()
            .filter(|(name, _)| rollups.follows(name))
            .map(|(_, p)| p as Arc<dyn datafusion::catalog::TableProvider>)
            .collect();
        let semantic = Arc::new(semantic);
        cube_rewrite.set(semantic.clone())?;
        let access = Arc::new(access::Access::new(ctx.clone(), semantic.clone(), lake_schema, admin_schema, roles.clone(), sizes));
        Ok(Engine { ctx, lake, semantic, parser, roles, plan_cache, memory, priorities, rollups, followed: Arc::new(followed), access, audit })
    }

    /// The same engine with a plan cache of `entries` plans (0: no cache), e.g. to measure
    /// planning without it.
    pub fn with_plan_cache(mut self, entries: usize) -> Engine {
        self.plan_cache = Arc::new(plan_cache::PlanCache::new(entries));
        self
    }

    /// How often a statement's plan came from the plan cache.
    pub fn plan_cache_stats(&self) -> plan_cache::Stats {
        self.plan_cache.stats()
    }

    /// Sets the roles the catalogs list (`pg_roles`, `pg_user`): the users who may connect.
    pub fn set_roles(&self, names: Vec<String>) {
        self.roles.set(names);
    }

    /// Sets each user's roles and attributes and what each role may do: from now on a
    /// session reads what its user's access policies give it ([`access`]).
    pub fn set_access(&self, users: std::collections::BTreeMap<String, crate::config::UserAccess>, roles: std::collections::BTreeMap<String, crate::config::RoleSettings>) {
        // pg_roles lists the group roles too, pg_auth_members their members.
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = roles.keys().map(|r| (r.clone(), Vec::new())).collect();
        for (user, access) in &users {
            for r in &access.roles {
                groups.entry(r.clone()).or_default().push(user.clone());
            }
        }
        self.roles.set_groups(groups);
        self.access.configure(users, roles);
    }

    /// Who `user` is for `SET ROLE` ([`access::Access::identity`]).
    pub fn identity(&self, user: &str) -> Arc<crate::pg::settings::Identity> {
        self.access.identity(user)
    }

    /// The session state a session plans in: its user's ([`access::Access::state_for`]), or
    /// the engine's own.
    async fn state_for(&self, session: &SessionInfo) -> Result<datafusion::execution::SessionState> {
        Ok(match self.access.state_for(&session.user, session.settings.role().as_deref()).await? {
            Some(state) => state,
            None => self.ctx.state(),
        })
    }

    /// The audit log statements and logins are recorded in.
    pub fn audit(&self) -> &Arc<crate::audit::AuditLog> {
        &self.audit
    }

    pub fn semantic(&self) -> &Semantic {
        &self.semantic
    }

    /// The rollups: their state, builds and refreshes.
    pub fn rollups(&self) -> &Arc<rollups::Rollups> {
        &self.rollups
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The engine's memory pool and spill disk.
    pub fn memory(&self) -> &memory::Memory {
        &self.memory
    }

    /// What a client statement may do: read only.
    fn client_options() -> SQLOptions {
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
    }

    /// Plans one SQL statement (with `$n` placeholders allowed) into a logical plan, with
    /// reads of cube tables rewritten into plans over the lake.
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan> {
        Ok(self.plan_with_cubes(sql).await?.plan)
    }

    /// Like [`Engine::plan`], also returning the cube queries the statement became.
    pub async fn plan_with_cubes(&self, sql: &str) -> Result<Planned> {
        self.plan_sql(sql, &SessionInfo::default())
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Syntax, "empty query"))
    }

    /// A statement's plan if the plan cache holds it: no planning, nothing to wait for, so a
    /// caller may skip what it does around planning (the server plans in a task of its own).
    /// A write is refused first, as [`Engine::plan_sql`] refuses it.
    pub fn cached_plan(&self, text: &str, session: &SessionInfo) -> Result<Option<Planned>> {
        if let Some(what) = writing_statement(text) {
            return Err(read_only(&what));
        }
        if !self.plan_cache.enabled() {
            return Ok(None);
        }
        let key = plan_cache::Key { sql: text.to_string(), user: session.user.clone(), settings: session.settings.clone(), rollups: self.rollups.epoch() };
        // A plan that reads rollups waits for the check that the lake has not moved
        // ([`Engine::plan_uncached`]); a plan over the lake is right at any version.
        Ok(self.plan_cache.get(&key).filter(|p| p.rollups.is_empty()))
    }

    /// Whether a session answers from rollups (`SET lakecube.rollups = off` turns it off).
    fn rollups_enabled(session: &SessionInfo) -> bool {
        Self::setting_on(session, ROLLUPS_SETTING)
    }

    /// Whether an on/off setting of the session is on (they are on by default).
    fn setting_on(session: &SessionInfo, name: &str) -> bool {
        !matches!(session.settings.get(name).as_deref().map(str::to_ascii_lowercase).as_deref(), Some("off" | "false" | "0" | "no"))
    }

    /// Whether a scan of `p` reads what the rollups' epoch follows: a rollup pinned at one
    /// version, or a lake table the rollups are built from.
    fn followed_by_epoch(&self, p: &dyn datafusion::catalog::TableProvider) -> bool {
        p.downcast_ref::<crate::semantic::rollup::RollupTable>().is_some_and(|r| r.is_pinned())
            || self.followed.iter().any(|f| std::ptr::addr_eq(Arc::as_ptr(f), p as *const dyn datafusion::catalog::TableProvider))
    }

    /// Plans one statement for a session; `None` for an empty statement (only comments).
    /// A query over cubes seen before with the same session settings comes from the plan
    /// cache, already optimized ([`plan_cache`]).
    pub async fn plan_sql(&self, text: &str, session: &SessionInfo) -> Result<Option<Planned>> {
        match self.cached_plan(text, session)? {
            Some(planned) => Ok(Some(planned)),
            None => self.plan_uncached(text, session).await,
        }
    }

    /// [`Engine::plan_sql`] for a statement [`Engine::cached_plan`] has just not found: plans
    /// it, and keeps the plan if it may be kept.
    pub async fn plan_uncached(&self, text: &str, session: &SessionInfo) -> Result<Option<Planned>> {
        let enabled = Self::rollups_enabled(session);
        let mut key = self.plan_cache.enabled().then(|| plan_cache::Key {
            sql: text.to_string(),
            user: session.user.clone(),
            settings: session.settings.clone(),
            rollups: self.rollups.epoch(),
        });
        if let Some((planned, k)) = key.as_ref().and_then(|k| self.plan_cache.get(k).map(|p| (p, k))) {
            // A kept plan that reads rollups is used while the lake has not moved since.
            if planned.rollups.is_empty() || self.rollups.routing(enabled).await?.1 == k.rollups {
                return Ok(Some(planned));
            }
        }
        let Some((stmt, kept)) = pg::parse_statement(&self.parser, text)? else { return Ok(None) };
        let state = self.state_for(session).await?;
        // The statement with its select lists' subqueries, if DataFusion can plan and
        // decorrelate them (an optimized plan left with a subquery expression cannot run);
        // else the compatibility parser's (pg::parse::with_select_list_subqueries).
        let kept = match kept {
            Some(kept) => match self.plan_statement(kept, session, &state, enabled).await {
                // Whether it may be cached is seen before the optimizer folds `now()`.
                Ok(planned) => {
                    let cacheable = plan_cache::cacheable(&planned);
                    state
                        .optimize(&planned.plan)
                        .ok()
                        .filter(|plan| !plan_cache::has_subquery_expressions(plan))
                        .map(|plan| (Planned { plan, optimized: true, ..planned }, cacheable))
                }
                Err(_) => None,
            },
            None => None,
        };
        let (mut planned, cacheable) = match kept {
            Some(kept) => kept,
            None => {
                let planned = self.plan_statement(stmt, session, &state, enabled).await?;
                let cacheable = plan_cache::cacheable(&planned);
                (planned, cacheable)
            }
        };
        if let Some(key) = key.as_mut() {
            key.rollups = planned.rollups_epoch;
        }
        if let Some(key) = key
            && cacheable
        {
            if !planned.optimized {
                planned.plan = state.optimize(&planned.plan).map_err(Error::from)?;
                planned.optimized = true;
            }
            if plan_cache::answer_is_fixed(&planned.plan) {
                planned.constant = Some(Arc::default());
            } else if !planned.rollups.is_empty()
                && Self::setting_on(session, ANSWER_REUSE_SETTING)
                && plan_cache::answer_is_fixed_in_epoch(&planned.plan, |p| self.followed_by_epoch(p))
            {
                // Answered from rollups: the same rows until the lake or a rollup moves.
                planned.constant = Some(Arc::new(constant::ConstantRows::up_to(constant::ROLLUP_MAX_BYTES)));
            }
            self.plan_cache.put(key, planned.clone());
        }
        if !planned.optimized {
            // Optimized when it runs (now() then is the time it runs); analyzed now for its types.
            planned.analyzed = state
                .analyzer()
                .execute_and_check(planned.plan.clone(), state.config_options(), |_, _| {})
                .ok()
                .map(|p| Arc::new(p.schema().as_arrow().clone()));
        }
        Ok(Some(planned))
    }

    /// A parsed statement's logical plan for a session, cube queries rewritten, not optimized.
    async fn plan_statement(
        &self,
        mut stmt: datafusion::sql::sqlparser::ast::Statement,
        session: &SessionInfo,
        state: &datafusion::execution::SessionState,
        rollups_enabled: bool,
    ) -> Result<Planned> {
        // EXPLAIN ANALYZE's metrics count the rows read before a policy's filter, and EXPLAIN
        // VERBOSE shows the base relations' columns, hidden members included: only for roles
        // that see the lake beneath the cubes anyway.
        if let datafusion::sql::sqlparser::ast::Statement::Explain { analyze, verbose, options, .. } = &stmt {
            let detailed = *analyze || *verbose || options.iter().flatten().any(|o| matches!(o.name.value.to_ascii_lowercase().as_str(), "analyze" | "verbose"));
            if detailed && self.access.sees_lake(&session.user, session.settings.role().as_deref()) == Some(false) {
                return Err(Error::new(ErrorKind::InsufficientPrivilege, "permission denied for EXPLAIN ANALYZE and EXPLAIN VERBOSE")
                    .with_hint("they show the lake beneath the cubes (rows read before access policies apply, hidden columns); plain EXPLAIN shows the plan. Roles with `lake: true` may use them (docs/security.md)"));
            }
        }
        let pg_names = pg::names::pg_column_names(&stmt);
        let setting_changes = pg::rewrite::rewrite_session(&mut stmt, session)?;
        let plan = state.statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(stmt))).await.map_err(|e| {
            let e = Error::from(e);
            // A user who does not see the lake is not told where its tables are.
            if e.kind == ErrorKind::UndefinedTable && self.access.sees_lake(&session.user, session.settings.role().as_deref()) == Some(false) {
                e.with_hint("the tables you may read are in schema public (psql: \\dt)")
            } else {
                e
            }
        })?;
        Self::client_options().verify_plan(&plan).map_err(read_only_error)?;
        // The rollups' state (a `head` per followed table) only for a statement that reads a
        // cube table with rollups.
        let (routing, rollups_epoch) = if self.semantic.reads_rollups(&plan) {
            self.rollups.routing(rollups_enabled).await?
        } else {
            (crate::semantic::rollup::Routing { enabled: rollups_enabled, states: Arc::default() }, self.rollups.epoch())
        };
        let r = rewrite::rewrite(plan, &self.semantic, &routing)?;
        let mut rollups: Vec<String> = r.queries.iter().filter_map(|q| q.rollup_id.clone()).collect();
        rollups.sort();
        rollups.dedup();
        let names = pg_names.and_then(|pg| {
            let df: Vec<String> = r.plan.schema().fields().iter().map(|f| f.name().clone()).collect();
            pg::names::resolve_names(&pg, &df).filter(|n| *n != df)
        });
        Ok(Planned { plan: r.plan, cube_queries: r.queries, names, setting_changes, rollups, rollups_epoch, optimized: false, analyzed: None, constant: None })
    }

    /// Runs a planned statement, returning its schema and a stream of batches.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        self.execute_plan(plan, false, None).await
    }

    /// The physical plan of a logical one; one already `optimized` skips the logical
    /// optimizer. This is where lake tables find their latest commit.
    pub async fn physical_plan(&self, plan: &LogicalPlan, optimized: bool) -> Result<Arc<dyn ExecutionPlan>> {
        Self::physical_plan_in(&self.ctx.state(), plan, optimized).await
    }

    async fn physical_plan_in(state: &SessionState, plan: &LogicalPlan, optimized: bool) -> Result<Arc<dyn ExecutionPlan>> {
        if optimized {
            state.query_planner().create_physical_plan(plan, state).await
        } else {
            state.create_physical_plan(plan).await
        }
        .map_err(Error::from)
    }

    /// Runs a plan; one already `optimized` goes straight to physical planning.
    async fn execute_plan(&self, plan: LogicalPlan, optimized: bool, meter: Option<&Meter>) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let state = self.ctx.state();
        let physical = Self::physical_plan_in(&state, &plan, optimized).await?;
        // Each query reserves through a pool of its own, its share of the server's.
        let runtime = self.memory.for_query(&state.runtime_env())?;
        let task = Arc::new(datafusion::execution::TaskContext::from(&state).with_runtime(runtime));
        // Heavy statements run at background priority (priority.rs).
        let stream = self.priorities.execute(physical.clone(), task)?;
        Ok(match meter {
            Some(meter) => (schema, meter.over(physical, stream)),
            None => (schema, stream),
        })
    }

    /// Runs a plan, its batches carrying the given column names.
    async fn execute_named(&self, planned: Planned, meter: Option<&Meter>) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let names = planned.names.as_deref();
        let (schema, stream) = self.execute_plan(planned.plan, planned.optimized, meter).await?;
        let renamed = rename(schema.clone(), names);
        if Arc::ptr_eq(&renamed, &schema) {
            return Ok((schema, stream));
        }
        use futures::StreamExt;
        let names: Vec<String> = names.map(<[String]>::to_vec).unwrap_or_default();
        let stream = stream.map(move |b| {
            // Each batch keeps its own types (the plan's schema may say Utf8 where the
            // execution produced Utf8View); only the names change.
            b.and_then(|b| {
                let schema = rename(b.schema(), Some(&names));
                Ok(datafusion::arrow::record_batch::RecordBatch::try_new(schema, b.columns().to_vec())?)
            })
        });
        let adapter = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(renamed.clone(), stream);
        Ok((renamed, Box::pin(adapter)))
    }

    /// Runs a planned statement. For `EXPLAIN`, the cube queries come first, as rows of
    /// plan_type `cube_query`, before DataFusion's plans over the lake.
    pub async fn execute_planned(&self, planned: Planned) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        self.execute_metered(planned, None).await
    }

    /// [`Engine::execute_planned`], counting into `meter` the bytes its scans read.
    pub async fn execute_metered(&self, planned: Planned, meter: Option<&Meter>) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let is_explain = matches!(planned.plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        if !is_explain {
            for id in &planned.rollups {
                self.rollups.hit(id);
            }
        }
        if !is_explain || planned.cube_queries.is_empty() {
            let Some(constant) = planned.constant.clone() else { return self.execute_named(planned, meter).await };
            if let Some(kept) = constant.stream() {
                return Ok(kept);
            }
            let (schema, stream) = self.execute_named(planned, meter).await?;
            return Ok((schema.clone(), constant.keep(schema, stream)));
        }
        use datafusion::arrow::array::{ArrayRef, StringArray};
        use datafusion::arrow::record_batch::RecordBatch;
        use futures::StreamExt;
        let (schema, mut stream) = self.execute(planned.plan).await?;
        // Each cube query, then (for a table with rollups) the rollup that answers it or why
        // none does.
        let mut kinds = Vec::new();
        let mut texts = Vec::new();
        for q in &planned.cube_queries {
            kinds.push("cube_query");
            texts.push(q.to_string());
            if let Some(r) = &q.rollup {
                kinds.push("rollup");
                texts.push(r.clone());
            }
        }
        let kinds = StringArray::from(kinds);
        let texts = StringArray::from(texts);
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
    read_only(&what)
}

fn read_only(what: &str) -> Error {
    Error::new(ErrorKind::ReadOnly, format!("lakecube is read-only for SQL clients: {what} is not allowed"))
        .with_hint("lakecube only answers queries; data enters the lake through `lakecube ingest` (demo data through `lakecube generate`)")
}

/// The statement's leading keywords if it writes data, changes the schema or touches files
/// (refused before parsing, so that even forms the parser does not know, like
/// `CREATE EXTERNAL TABLE` or `COPY … FROM`, get 25006 rather than a syntax error).
fn writing_statement(text: &str) -> Option<String> {
    const WRITERS: &[&str] = &[
        "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY",
        "GRANT", "REVOKE", "VACUUM", "ANALYZE", "ANALYSE", "REINDEX", "CLUSTER", "COMMENT", "REFRESH", "IMPORT",
        "SECURITY", "CALL", "DO", "LOAD", "LOCK", "NOTIFY", "LISTEN", "CHECKPOINT", "REASSIGN",
    ];
    let words = pg::parse::leading_words(text, 3);
    let first = words.first()?;
    WRITERS.contains(&first.as_str()).then(|| words.join(" "))
}
