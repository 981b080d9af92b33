//! Rollups (Cube's `pre_aggregations` of type `rollup`): what a rollup stores, the plan that
//! builds it from the lake, and, for each served table, the relation that reads it back.
//!
//! A rollup of cube `C` is a Delta table (`<lake>/_rollups/<C>/<name>`) with one row per group
//! of its dimensions and time bucket, and per leaf measure its *partial* values, the ones
//! that merge exactly at any coarser grain ([`Partial`]): a sum, a count, a min, a max, a sum
//! and a count for an average, and for a distinct count the set of distinct values
//! ([`sets`]). Number measures (`conversion`) are not stored: they are computed from their
//! leaves after merging, so a ratio is a ratio of sums at the query's grain.
//!
//! For a served table whose root cube is `C` (the cube itself, or a view starting at it),
//! [`TableRollup`] holds the rollup re-expressed in that table's base columns: its dimensions
//! under the names the table exposes them, the time bucket as the time dimension, and the
//! cubes the table joins many-to-one joined to the rollup rows when the rollup keeps their
//! join keys (a store × day rollup answers by store name or region through `stores`). The
//! rewrite ([`super::rewrite`]) routes a read there when the rollup covers it.

pub mod sets;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider, Session, TableProvider};
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::Column;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::expr_fn::{array_agg, count, max, min, sum};
use datafusion::logical_expr::{Cast, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::{CubeTable, DIM, TableSpec, compile_table, quote};
use crate::error::{Error, Result};
use crate::model::{Cube, Granularity, Join, MeasureType, Model, PreAggregationType, Relationship};

/// The schema the rollups are read from while planning their relations (never seen by clients).
const ROLLUP_SCHEMA: &str = "_rollup";
/// The partition of a rollup without a time dimension: the whole table.
pub const WHOLE: &str = "all";

/// A leaf's partial values: how they are computed from rows, merged, and finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    Sum,
    Count,
    Min,
    Max,
    /// The set of distinct non-null values.
    Set,
    /// The size of a row's set, stored beside it. Sizes add up to the distinct count only
    /// where the sets merged are disjoint ([`RollupState::disjoint`]): then a distinct count
    /// is a sum, and the sets are never read.
    Size,
}

impl Partial {
    /// The partials a leaf of this type keeps, in column order.
    pub fn of(kind: MeasureType) -> &'static [Partial] {
        match kind {
            MeasureType::Sum | MeasureType::Number => &[Partial::Sum],
            MeasureType::Count => &[Partial::Count],
            MeasureType::Min => &[Partial::Min],
            MeasureType::Max => &[Partial::Max],
            MeasureType::Avg => &[Partial::Sum, Partial::Count],
            MeasureType::CountDistinct => &[Partial::Set],
        }
    }

    /// The column-name suffix (`footfall__sum`).
    pub fn suffix(self) -> &'static str {
        match self {
            Partial::Sum => "sum",
            Partial::Count => "count",
            Partial::Min => "min",
            Partial::Max => "max",
            Partial::Set => "set",
            Partial::Size => "size",
        }
    }

    /// The partial over rows (`input`: the leaf's input column).
    pub fn over_rows(self, input: Expr) -> Expr {
        match self {
            Partial::Sum => sum(input),
            Partial::Count => count(input),
            Partial::Min => min(input),
            Partial::Max => max(input),
            Partial::Set => array_agg(input.clone())
                .distinct()
                .filter(input.is_not_null())
                .build()
                .expect("array_agg takes DISTINCT and FILTER"),
            Partial::Size => count(input).distinct().build().expect("count takes DISTINCT"),
        }
    }

    /// Partials merged into the same partial (above a UNION of rollup and raw rows).
    pub fn merged(self, partial: Expr) -> Expr {
        match self {
            Partial::Sum | Partial::Count | Partial::Size => sum(partial),
            Partial::Min => min(partial),
            Partial::Max => max(partial),
            Partial::Set => sets::DistinctSet::call(sets::Output::Set, partial),
        }
    }
}

/// A leaf's value from its merged partials (each already an aggregate expression), as the
/// leaf's own aggregate would give it: cast to its type; a count of no rows is 0.
pub fn leaf_value(kind: MeasureType, partials: Vec<Expr>, data_type: &DataType) -> Expr {
    let mut p = partials.into_iter();
    let mut next = || p.next().expect("one expression per partial");
    let value = match kind {
        MeasureType::Count => datafusion::functions::expr_fn::coalesce(vec![next(), lit(0i64)]),
        MeasureType::Avg => {
            let (s, c) = (next(), next());
            Expr::Cast(Cast::new(Box::new(s), DataType::Float64)) / Expr::Cast(Cast::new(Box::new(c), DataType::Float64))
        }
        MeasureType::Sum | MeasureType::Number | MeasureType::Min | MeasureType::Max | MeasureType::CountDistinct => next(),
    };
    Expr::Cast(Cast::new(Box::new(value), data_type.clone()))
}

/// How a merged partial is finished for the leaf value: the set's size for a distinct
/// count, the partial itself otherwise.
pub fn finish(partial: Partial, merged_input: Expr) -> Expr {
    match partial {
        Partial::Set => sets::DistinctSet::call(sets::Output::Count, merged_input),
        other => other.merged(merged_input),
    }
}

/// A rollup's time dimension.
#[derive(Debug, Clone)]
pub struct TimeSpec {
    /// The root cube's time dimension (`period`).
    pub member: String,
    pub granularity: Granularity,
    pub partition: Granularity,
    /// The bucket column (`period_day`).
    pub column: String,
    /// The partition column (`period_month`, a date).
    pub partition_column: String,
    /// Whether each row's instants all start its bucket (`period_exact`): where every row of a
    /// partition says so, the bucket is the instant itself, and any use of the time dimension
    /// (`BETWEEN` two instants, `date_trunc('minute', …)`) is answered exactly.
    pub exact_column: String,
    /// The lake column the dimension is, when it is one (`ts`): its file statistics say which
    /// partitions a lake commit touched.
    pub source_column: Option<String>,
}

/// A dimension a rollup stores.
#[derive(Debug, Clone)]
pub struct RollupDim {
    /// The cube it belongs to, as a join alias from the root (`traffic`, `traffic__stores`).
    pub alias: String,
    pub member: String,
    /// Its column in the rollup (`store_id`, `stores__region`).
    pub column: String,
}

/// A leaf measure a rollup stores, as its partials.
#[derive(Debug, Clone)]
pub struct RollupLeaf {
    /// The leaf's key in the root cube's tables (`traffic__footfall`).
    pub key: String,
    /// The measure (`footfall`); its partial columns are `footfall__sum`, ….
    pub measure: String,
    pub kind: MeasureType,
    /// The leaf aggregate's type, which a merged value is cast back to.
    pub data_type: DataType,
}

impl RollupLeaf {
    pub fn partials(&self) -> &'static [Partial] {
        Partial::of(self.kind)
    }

    /// The columns the rollup stores for the leaf: its partials, and a distinct set's size.
    pub fn stored(&self) -> &'static [Partial] {
        match self.kind {
            MeasureType::CountDistinct => &[Partial::Set, Partial::Size],
            other => Partial::of(other),
        }
    }

    pub fn column(&self, p: Partial) -> String {
        format!("{}__{}", self.measure, p.suffix())
    }
}

/// A rollup, compiled.
#[derive(Debug)]
pub struct RollupDef {
    /// `<cube>/<name>`: its folder under `<lake>/_rollups/`.
    pub id: String,
    pub cube: String,
    pub name: String,
    pub time: Option<TimeSpec>,
    pub dims: Vec<RollupDim>,
    pub leaves: Vec<RollupLeaf>,
    /// The rows' schema (what the build writes).
    pub schema: SchemaRef,
    /// The aggregate over the lake that gives every row, before any time filter.
    build: LogicalPlan,
    /// The lake tables the build reads.
    pub sources: Vec<String>,
    /// The root cube's lake table, when it is one (`traffic`).
    pub root_table: Option<String>,
    /// SQL giving the first and the last instant to build (`build_range_start`/`_end`).
    pub build_range: (Option<String>, Option<String>),
    /// Changes whenever what the rollup stores or how it is computed changes: a rollup built
    /// under another fingerprint is rebuilt, never read.
    pub fingerprint: String,
}

impl RollupDef {
    /// The build plan for rows whose time lies in `[start, end)` (µs since 1970, UTC-naive),
    /// or for every row.
    pub fn build_plan(&self, range: Option<(i64, i64)>) -> Result<LogicalPlan> {
        let LogicalPlan::Aggregate(a) = &self.build else { return Err(Error::internal("a rollup build is an aggregate")) };
        let mut input = LogicalPlanBuilder::from(a.input.as_ref().clone());
        if let (Some(t), Some((start, end))) = (&self.time, range) {
            // The filter goes under the aggregate, on the base's time column, where it reaches
            // the lake scan (file and partition pruning).
            let time = Expr::Column(Column::new_unqualified(&t.member));
            let within = time.clone().gt_eq(lit(datafusion::common::ScalarValue::TimestampMicrosecond(Some(start), None)))
                .and(time.lt(lit(datafusion::common::ScalarValue::TimestampMicrosecond(Some(end), None))));
            input = input.filter(within).map_err(Error::from)?;
        }
        let grouped = with_sizes(input.aggregate(a.group_expr.clone(), a.aggr_expr.clone()).and_then(|b| b.build()).map_err(Error::from)?, &self.leaves)?;
        // Rows sorted by the dimensions, then time: each file's row groups and pages then hold
        // few values of the first dimensions, and a filter on one (a store) skips the rest by
        // their statistics.
        let keys: Vec<_> = grouped.schema().columns().into_iter().take(a.group_expr.len()).map(|c| Expr::Column(c).sort(true, false)).collect();
        LogicalPlanBuilder::from(grouped).sort(keys).and_then(|b| b.build()).map_err(Error::from)
    }

    /// The table name of the rollup's rows while planning (`_rollup."traffic__daily"`).
    fn scratch_name(&self) -> String {
        self.id.replace('/', "__")
    }
}

/// The aggregated rows of a rollup with, after them, the size of each distinct set
/// ([`Partial::Size`]; 0 for no values).
fn with_sizes(grouped: LogicalPlan, leaves: &[RollupLeaf]) -> Result<LogicalPlan> {
    let mut exprs: Vec<Expr> = grouped.schema().columns().into_iter().map(Expr::Column).collect();
    for l in leaves.iter().filter(|l| l.stored().contains(&Partial::Size)) {
        let set = Expr::Column(Column::new_unqualified(l.column(Partial::Set)));
        let size = Expr::Cast(Cast::new(Box::new(datafusion::functions_nested::expr_fn::cardinality(set)), DataType::Int64));
        exprs.push(datafusion::functions::expr_fn::coalesce(vec![size, lit(0i64)]).alias(l.column(Partial::Size)));
    }
    LogicalPlanBuilder::from(grouped).project(exprs).and_then(|b| b.build()).map_err(Error::from)
}

/// The provider clients never see: a rollup's rows at one version, or (`rows: None`) the
/// table its relations are planned over, which routing replaces by a pinned one ([`pin`])
/// before anything reads it.
#[derive(Debug)]
pub struct RollupTable {
    pub def_id: String,
    schema: SchemaRef,
    rows: Option<Arc<dyn TableProvider>>,
}

impl RollupTable {
    /// The rows of one version of a rollup's table (`rows`: its Delta provider or its rows
    /// in memory), under the rollup's schema.
    pub fn pinned(def: &RollupDef, rows: Arc<dyn TableProvider>) -> RollupTable {
        RollupTable { def_id: def.id.clone(), schema: def.schema.clone(), rows: Some(rows) }
    }

    /// Whether it reads one version of the rollup's rows ([`pin`]).
    pub fn is_pinned(&self) -> bool {
        self.rows.is_some()
    }
}

/// `plan` reading `table` wherever it reads rollup `def_id`: a statement reads the version
/// of the rollup its routing saw, whatever commits land while it runs.
pub fn pin(plan: &LogicalPlan, def_id: &str, table: Arc<dyn TableProvider>) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    plan.clone()
        .transform_up(|n| match n {
            LogicalPlan::TableScan(scan)
                if datafusion::datasource::source_as_provider(&scan.source)
                    .ok()
                    .and_then(|p| p.downcast_ref::<RollupTable>().map(|r| r.def_id == def_id))
                    .unwrap_or(false) =>
            {
                let source = datafusion::datasource::provider_as_source(table.clone());
                Ok(Transformed::yes(LogicalPlan::TableScan(datafusion::logical_expr::TableScan { source, ..scan })))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

#[async_trait]
impl TableProvider for RollupTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        match &self.rows {
            Some(p) => p.supports_filters_pushdown(filters),
            None => Ok(vec![datafusion::logical_expr::TableProviderFilterPushDown::Unsupported; filters.len()]),
        }
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        match &self.rows {
            Some(p) => p.scan(state, projection, filters, limit).await,
            None => Err(datafusion::error::DataFusionError::Execution(format!("rollup `{}` is not built", self.def_id))),
        }
    }
}

/// A join step from a rollup's cube: the join, and the cube it reaches.
type Step<'m> = (&'m Join, &'m Cube);

/// The join path from `root` to the cube named `target` through joins that do not multiply
/// `root`'s rows (many-to-one, one-to-one), shortest first.
fn path_to<'m>(model: &'m Model, root: &'m Cube, target: &str) -> Option<Vec<Step<'m>>> {
    let mut queue: Vec<(&Cube, Vec<Step<'m>>)> = vec![(root, vec![])];
    let mut seen = vec![root.name.clone()];
    let mut i = 0;
    while i < queue.len() {
        let (cube, path) = queue[i].clone();
        if cube.name == target {
            return Some(path);
        }
        for j in &cube.joins {
            if matches!(j.relationship, Relationship::ManyToOne | Relationship::OneToOne)
                && let Some(next) = model.cube(&j.name)
                && !seen.contains(&next.name)
            {
                seen.push(next.name.clone());
                let mut p = path.clone();
                p.push((j, next));
                queue.push((next, p));
            }
        }
        i += 1;
    }
    None
}

/// The join alias of a cube at the end of `path` from `root` (`traffic__stores`), as views
/// name them.
fn alias_of(root: &Cube, path: &[Step<'_>]) -> String {
    std::iter::once(root.name.as_str()).chain(path.iter().map(|(j, _)| j.name.as_str())).collect::<Vec<_>>().join("__")
}

/// A member reference of a rollup (`x`, `CUBE.x`, `cube.x`): the join path to its cube and
/// the member's name.
fn resolve<'m>(model: &'m Model, root: &'m Cube, r: &str) -> Result<(Vec<Step<'m>>, String)> {
    match r.split_once('.') {
        None => Ok((vec![], r.to_string())),
        Some(("CUBE", m)) => Ok((vec![], m.to_string())),
        Some((c, m)) if c == root.name => Ok((vec![], m.to_string())),
        Some((c, m)) => path_to(model, root, c)
            .map(|p| (p, m.to_string()))
            .ok_or_else(|| Error::config(format!("cube `{}`: a rollup member `{r}` is not reachable many-to-one", root.name))),
    }
}

/// A stable hash of a text (FNV-1a), for fingerprints that survive a rebuild of lakecube.
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The lake table a cube reads, when it reads one (`sql_table: lake.traffic`).
fn lake_table(c: &Cube) -> Option<String> {
    let t = c.sql_table.as_deref()?.trim();
    let t = t.strip_prefix("lake.").unwrap_or(t);
    (!t.contains('.') && !t.is_empty()).then(|| t.trim_matches('"').to_string())
}

/// The lake column a time dimension is, when its SQL is a bare column (`ts`, `{CUBE}.ts`).
fn bare_column(sql: &str) -> Option<String> {
    let s = sql.trim();
    let s = s.strip_prefix("{CUBE}.").unwrap_or(s);
    (s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| s.to_string())
}

/// The lake tables a plan reads (schema `lake`).
fn tables_read(plan: &LogicalPlan) -> Vec<String> {
    let mut out = Vec::new();
    let _ = plan.apply(|n| {
        if let LogicalPlan::TableScan(t) = n {
            let name = t.table_name.table().to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Compiles every rollup of the model over the lake tables of `ctx`.
pub async fn compile(model: &Model, ctx: &SessionContext) -> Result<Vec<Arc<RollupDef>>> {
    let mut out = Vec::new();
    for c in model.cubes.iter().map(|s| &s.item) {
        for p in c.pre_aggregations.iter().filter(|p| p.kind == PreAggregationType::Rollup) {
            out.push(Arc::new(compile_one(model, c, p, ctx).await?));
        }
    }
    Ok(out)
}

async fn compile_one(model: &Model, c: &Cube, p: &crate::model::PreAggregation, ctx: &SessionContext) -> Result<RollupDef> {
    let who = format!("cube `{}`, pre-aggregation `{}`", c.name, p.name);
    let mut spec = TableSpec { name: format!("{}.{}", c.name, p.name), description: None, cubes: vec![(c.name.clone(), c, None)], exposed: vec![], access_policy: vec![] };
    fn add_path<'m>(c: &Cube, spec: &mut TableSpec<'m>, path: &[Step<'m>]) {
        for i in 0..path.len() {
            let alias = alias_of(c, &path[..=i]);
            if !spec.cubes.iter().any(|(a, _, _)| *a == alias) {
                let parent = alias_of(c, &path[..i]);
                let (j, cube) = path[i];
                spec.cubes.push((alias, cube, Some((parent, j.relationship, j.sql.clone()))));
            }
        }
    }
    let mut dims = Vec::new();
    for r in p.dimensions.iter().chain(p.segments.iter()) {
        let (path, member) = resolve(model, c, r)?;
        add_path(c, &mut spec, &path);
        let alias = alias_of(c, &path);
        let column = if path.is_empty() { member.clone() } else { format!("{}__{member}", path.iter().map(|(j, _)| j.name.as_str()).collect::<Vec<_>>().join("__")) };
        if !dims.iter().any(|d: &RollupDim| d.column == column) {
            spec.exposed.push((column.clone(), alias.clone(), member.clone()));
            dims.push(RollupDim { alias, member, column });
        }
    }
    let time = match &p.time_dimension {
        Some(td) => {
            let (path, member) = resolve(model, c, td)?;
            if !path.is_empty() {
                return Err(Error::config(format!("{who}: its time_dimension `{td}` must be a dimension of `{}` itself", c.name)));
            }
            let granularity = p.granularity.ok_or_else(|| Error::config(format!("{who}: a time_dimension needs a granularity")))?;
            // Partitions are named by the date they start: a day at the finest.
            let partition = p.partition_granularity.unwrap_or(if granularity == Granularity::Hour { Granularity::Day } else { granularity });
            if partition == Granularity::Hour {
                return Err(Error::config(format!("{who}: partition_granularity `hour` is finer than a rollup partition can be"))
                    .with_hint("use partition_granularity: day (or coarser)"));
            }
            if !spec.exposed.iter().any(|(n, _, _)| *n == member) {
                spec.exposed.push((member.clone(), c.name.clone(), member.clone()));
            }
            let source_column = c.dimensions.iter().find(|d| d.name == member).and_then(|d| bare_column(&d.sql));
            Some(TimeSpec {
                column: format!("{member}_{}", granularity.name()),
                partition_column: if partition == granularity {
                    format!("{member}_{}_partition", partition.name())
                } else {
                    format!("{member}_{}", partition.name())
                },
                exact_column: format!("{member}_exact"),
                member,
                granularity,
                partition,
                source_column,
            })
        }
        None => None,
    };
    let mut measures = Vec::new();
    for r in &p.measures {
        let (path, member) = resolve(model, c, r)?;
        if !path.is_empty() {
            return Err(Error::config(format!("{who}: measure `{r}` is not `{}`'s own", c.name)));
        }
        if !measures.contains(&member) {
            spec.exposed.push((member.clone(), c.name.clone(), member.clone()));
            measures.push(member);
        }
    }
    let table = compile_table(ctx, &spec).await?;
    let mut keys = Vec::new();
    for m in &measures {
        table.leaves_of(m, &mut keys);
    }
    let prefix = format!("{}__", c.name);
    let leaves: Vec<RollupLeaf> = keys
        .iter()
        .map(|k| RollupLeaf {
            key: k.clone(),
            measure: k.strip_prefix(&prefix).unwrap_or(k).to_string(),
            kind: table.leaf_kind(k),
            data_type: table.leaves.get(k).map(|l| l.data_type.clone()).unwrap_or(DataType::Null),
        })
        .collect();
    let mut cols: Vec<String> = dims.iter().map(|d| d.column.clone()).collect();
    cols.extend(time.iter().map(|t| t.member.clone()));
    cols.extend(leaves.iter().map(|l| CubeTable::leaf_input(&l.key)));
    let (_, base) = table.base_for(cols.iter().map(String::as_str));
    let column = |n: &str| Expr::Column(Column::new_unqualified(n));
    let mut groups: Vec<Expr> = dims.iter().map(|d| column(&d.column).alias(&d.column)).collect();
    if let Some(t) = &time {
        let trunc = |g: Granularity| datafusion::functions::expr_fn::date_trunc(lit(g.name()), column(&t.member));
        groups.push(trunc(t.granularity).alias(&t.column));
        groups.push(Expr::Cast(Cast::new(Box::new(trunc(t.partition)), DataType::Date32)).alias(&t.partition_column));
    }
    let mut aggs = Vec::new();
    if let Some(t) = &time {
        let bucket = datafusion::functions::expr_fn::date_trunc(lit(t.granularity.name()), column(&t.member));
        aggs.push(datafusion::functions_aggregate::expr_fn::bool_and(column(&t.member).eq(bucket)).alias(&t.exact_column));
    }
    for l in &leaves {
        for part in l.partials() {
            aggs.push(part.over_rows(column(&CubeTable::leaf_input(&l.key))).alias(l.column(*part)));
        }
    }
    let build = LogicalPlanBuilder::from(base.clone())
        .aggregate(groups, aggs)
        .and_then(|b| b.build())
        .map_err(|e| Error::config(format!("{who}: its rows do not plan: {e}")))?;
    let state = ctx.state();
    let rows = with_sizes(build.clone(), &leaves).map_err(|e| Error::config(format!("{who}: its rows do not plan: {}", e.message)))?;
    let analyzed = state
        .analyzer()
        .execute_and_check(rows, state.config_options(), |_, _| {})
        .map_err(|e| Error::config(format!("{who}: its rows do not plan: {e}")))?;
    // As a Delta table gives it back: a list's element field is named `element`.
    let fields: Vec<datafusion::arrow::datatypes::Field> = analyzed
        .schema()
        .as_arrow()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::List(e) => f.as_ref().clone().with_data_type(DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("element", e.data_type().clone(), true)))),
            _ => f.as_ref().clone(),
        })
        // Parquet files say every column may be null; so does the table, so that plans over it
        // agree with the files.
        .map(|f| f.with_nullable(true))
        .collect();
    let schema: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let fingerprint = fnv(&format!("{}\n{:?}\n{}", serde_json::to_string(p).unwrap_or_default(), schema, base.display_indent()));
    Ok(RollupDef {
        id: format!("{}/{}", c.name, p.name),
        cube: c.name.clone(),
        name: p.name.clone(),
        time,
        dims,
        leaves,
        schema,
        sources: tables_read(&build),
        root_table: lake_table(c),
        build,
        build_range: (p.build_range_start.as_ref().map(|r| r.sql.clone()), p.build_range_end.as_ref().map(|r| r.sql.clone())),
        fingerprint,
    })
}

/// One way of reading a rollup as a served table's base relation: the cubes it joins to the
/// rollup rows, the base columns it has, and the plan.
#[derive(Debug, Clone)]
pub struct Variant {
    pub joined: Vec<String>,
    pub columns: HashSet<String>,
    pub plan: LogicalPlan,
}

/// A rollup as a served table reads it.
#[derive(Debug, Clone)]
pub struct TableRollup {
    pub def: Arc<RollupDef>,
    /// The table's name for the rollup's time dimension (`period`).
    pub time_column: Option<String>,
    /// Narrowest first.
    pub variants: Vec<Variant>,
}

impl TableRollup {
    /// The narrowest variant that has every one of `columns`.
    pub fn variant_for(&self, columns: &[String]) -> Option<&Variant> {
        self.variants.iter().find(|v| columns.iter().all(|c| v.columns.contains(c)))
    }

    /// The leaf of `key`, if the rollup stores it.
    pub fn leaf(&self, key: &str) -> Option<&RollupLeaf> {
        self.def.leaves.iter().find(|l| l.key == key)
    }
}

/// The partial column of a leaf in a rollup relation (`__p_traffic__footfall__sum`).
pub fn partial_column(key: &str, p: Partial) -> String {
    format!("__p_{key}__{}", p.suffix())
}

/// A context where the rollups can be planned over as tables (schema `_rollup`), besides the
/// lake: for planning rollup relations, never for clients.
fn scratch_context(ctx: &SessionContext, defs: &[Arc<RollupDef>]) -> Result<SessionContext> {
    let state = ctx.state();
    let catalog_name = state.config().options().catalog.default_catalog.clone();
    let main = ctx.catalog(&catalog_name).ok_or_else(|| Error::internal("default catalog missing"))?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    for name in main.schema_names() {
        if let Some(s) = main.schema(&name) {
            catalog.register_schema(&name, s).map_err(Error::from)?;
        }
    }
    let rollups = Arc::new(MemorySchemaProvider::new());
    for d in defs {
        rollups
            .register_table(d.scratch_name(), Arc::new(RollupTable { def_id: d.id.clone(), schema: d.schema.clone(), rows: None }))
            .map_err(Error::from)?;
    }
    catalog.register_schema(ROLLUP_SCHEMA, rollups).map_err(Error::from)?;
    let list = Arc::new(MemoryCatalogProviderList::new());
    list.register_catalog(catalog_name, catalog);
    Ok(SessionContext::new_with_state(SessionStateBuilder::new_from_existing(state).with_catalog_list(list).build()))
}

/// The rollups of `defs` a served table can read: those of its root cube, each with its
/// variants (see [`TableRollup`]).
pub(super) async fn for_table(ctx: &SessionContext, spec: &TableSpec<'_>, table: &CubeTable, defs: &[Arc<RollupDef>]) -> Result<Vec<TableRollup>> {
    let (root_alias, root, _) = &spec.cubes[0];
    let mine: Vec<Arc<RollupDef>> = defs.iter().filter(|d| d.cube == root.name && *root_alias == root.name).cloned().collect();
    if mine.is_empty() {
        return Ok(vec![]);
    }
    let scratch = scratch_context(ctx, &mine)?;
    let mut out = Vec::new();
    for def in mine {
        let time_column = def.time.as_ref().and_then(|t| {
            spec.exposed.iter().find(|(_, a, m)| a == root_alias && *m == t.member).map(|(n, _, _)| n.clone())
        });
        if def.time.is_some() && time_column.is_none() {
            continue; // the table does not show the time dimension: no way to split by freshness
        }
        // Only cubes joined many-to-one (or one-to-one) all the way from the root: a
        // one-to-many join would repeat the rollup's rows.
        let unmultiplied = |a: &str| {
            spec.cubes.iter().find(|(x, _, _)| x == a).and_then(|(_, _, j)| j.as_ref()).is_some_and(|(_, r, _)| matches!(r, Relationship::ManyToOne | Relationship::OneToOne))
        };
        let mut variants = Vec::new();
        for set in spec.join_subsets() {
            if !set.iter().all(|a| unmultiplied(a)) {
                continue;
            }
            if let Some(v) = variant(&scratch, spec, table, &def, time_column.as_deref(), &set).await {
                variants.push(v);
            }
        }
        variants.sort_by_key(|v| v.joined.len());
        if !variants.is_empty() {
            out.push(TableRollup { def, time_column, variants });
        }
    }
    Ok(out)
}

/// The rollup's rows joined to the cubes `joined` of the table, with every base column of the
/// table it can give; `None` when a join needs a column the rollup does not keep.
async fn variant(scratch: &SessionContext, spec: &TableSpec<'_>, table: &CubeTable, def: &RollupDef, time_column: Option<&str>, joined: &[String]) -> Option<Variant> {
    let root_alias = &spec.cubes[0].0;
    let root = quote(root_alias);
    // The root's columns, from the rollup: its dimensions (as `__d_<member>`, as join
    // conditions name them), stored dimensions of joined cubes, partials.
    let mut inner = Vec::new();
    let root_cube = spec.cubes[0].1;
    for d in &def.dims {
        let name = if d.alias == *root_alias { format!("{DIM}{}", d.member) } else { format!("__s_{}__{}", d.alias, d.member) };
        inner.push(format!("{} AS {}", quote(&d.column), quote(&name)));
        // Join conditions name the source's columns (`{CUBE}.store_id`): a dimension that is
        // a bare column stands for it.
        if d.alias == *root_alias
            && let Some(c) = root_cube.dimensions.iter().find(|x| x.name == d.member).and_then(|x| bare_column(&x.sql))
            && c != name
        {
            inner.push(format!("{} AS {}", quote(&d.column), quote(&c)));
        }
    }
    if let Some(t) = &def.time {
        inner.push(format!("{} AS {}", quote(&t.column), quote(&format!("{DIM}{}", t.member))));
    }
    for l in &def.leaves {
        for p in l.stored() {
            inner.push(format!("{} AS {}", quote(&l.column(*p)), quote(&partial_column(&l.key, *p))));
        }
    }
    let mut from = format!("(SELECT {} FROM {}.{}) AS {root}", inner.join(", "), quote(ROLLUP_SCHEMA), quote(&def.scratch_name()));
    for (alias, cube, join) in spec.cubes.iter().skip(1).filter(|(a, _, _)| joined.contains(a)) {
        let (parent, _, sql) = join.as_ref()?;
        let on = super::join_on(spec, parent, alias, cube, sql).ok()?;
        let sub = super::cube_subquery(cube, &format!("{alias}__")).ok()?;
        from.push_str(&format!(" LEFT JOIN {sub} AS {} ON {on}", quote(alias)));
    }
    let mut select = Vec::new();
    let mut columns = HashSet::new();
    for (exposed, alias, member) in &spec.exposed {
        let Some(m) = table.member(exposed) else { continue };
        if m.is_measure() {
            continue;
        }
        let source = if alias == root_alias {
            let kept = def.dims.iter().any(|d| d.alias == *alias && d.member == *member) || time_column == Some(exposed.as_str());
            kept.then(|| format!("{root}.{}", quote(&format!("{DIM}{member}"))))
        } else if def.dims.iter().any(|d| d.alias == *alias && d.member == *member) {
            Some(format!("{root}.{}", quote(&format!("__s_{alias}__{member}"))))
        } else if joined.contains(alias) {
            Some(format!("{}.{}", quote(alias), quote(&format!("{DIM}{member}"))))
        } else {
            None
        };
        if let Some(s) = source {
            select.push(format!("{s} AS {}", quote(exposed)));
            columns.insert(exposed.clone());
        }
    }
    for l in &def.leaves {
        for p in l.stored() {
            let c = partial_column(&l.key, *p);
            select.push(format!("{root}.{}", quote(&c)));
        }
    }
    let sql = format!("SELECT {} FROM {from}", select.join(", "));
    let plan = match scratch.state().create_logical_plan(&sql).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(rollup = %def.id, table = %spec.name, joined = ?joined, "a rollup relation does not plan: {e}");
            return None;
        }
    };
    // Each column with the type the table's base has (a time bucket may come back in another
    // timestamp unit).
    let base_schema = table.base_plan().schema().clone();
    let exprs: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(q, f)| {
            let c = Expr::Column(Column::new(q.cloned(), f.name()));
            match base_schema.field_with_unqualified_name(f.name()) {
                Ok(bf) if bf.data_type() != f.data_type() => Expr::Cast(Cast::new(Box::new(c), bf.data_type().clone())).alias(f.name()),
                _ => c,
            }
        })
        .collect();
    let plan = LogicalPlanBuilder::from(plan).project(exprs).and_then(|b| b.build()).ok()?;
    Some(Variant { joined: joined.to_vec(), columns, plan })
}

/// What routing knows of one rollup at the lake version a statement reads (the engine
/// works it out, see `engine::rollups`).
#[derive(Debug, Clone, Default)]
pub struct RollupState {
    /// Why the rollup cannot answer at all (not built, built from another definition, a
    /// dimension table it stores changed since), if it cannot.
    pub unusable: Option<String>,
    /// The time ranges `[start, end)` (µs) whose partitions are built and current, merged
    /// and in order; for a rollup without a time dimension, one range over all time when it
    /// is current.
    pub fresh: Vec<(i64, i64)>,
    /// The lake's first and last instant of the time dimension (file statistics), when known.
    pub lake_bounds: Option<(i64, i64)>,
    /// Whether some lake rows may have no time (their rows are never in a partition).
    pub lake_time_nulls: bool,
    /// Whether, in every current partition, each instant starts its bucket (the lake's data
    /// is no finer than the rollup): then any use of the time dimension is answered exactly.
    pub exact_time: bool,
    /// The distinct-count measures (`trading_hours`) whose sets are pairwise disjoint within
    /// each current partition (checked when the partition is built): where no group of a read
    /// spans two partitions, their distinct count is the sum of the stored sizes.
    pub disjoint: Vec<String>,
    /// Whether every partition the rows hold is current (no filter needs to leave any out).
    pub all_fresh: bool,
    /// The rollup's rows at the version this state describes ([`RollupTable::pinned`]).
    pub table: Option<Arc<dyn TableProvider>>,
    pub rows: u64,
}

impl RollupState {
    /// Whether the fresh ranges hold every lake row, so that the raw lake has nothing to add.
    pub fn covers_lake(&self) -> bool {
        match self.lake_bounds {
            Some((lo, hi)) => !self.lake_time_nulls && self.fresh.iter().any(|(a, b)| *a <= lo && hi < *b),
            None => false,
        }
    }
}

/// Whether and from what the rewrite may answer from rollups: the session's setting and
/// each rollup's state.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub enabled: bool,
    pub states: Arc<std::collections::HashMap<String, Arc<RollupState>>>,
}

/// The start of the `g` period holding `t` (µs since 1970, naive UTC): PostgreSQL's
/// `date_trunc`, weeks starting on Monday.
pub fn truncate(t: i64, g: Granularity) -> i64 {
    use chrono::{Datelike, NaiveDate, Timelike};
    let Some(dt) = chrono::DateTime::from_timestamp_micros(t).map(|d| d.naive_utc()) else { return t };
    let day = dt.date();
    let start = match g {
        Granularity::Hour => day.and_hms_opt(dt.hour(), 0, 0),
        Granularity::Day => day.and_hms_opt(0, 0, 0),
        Granularity::Week => (day - chrono::Duration::days(day.weekday().num_days_from_monday() as i64)).and_hms_opt(0, 0, 0),
        Granularity::Month => NaiveDate::from_ymd_opt(day.year(), day.month(), 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        Granularity::Quarter => NaiveDate::from_ymd_opt(day.year(), (day.month() - 1) / 3 * 3 + 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
        Granularity::Year => NaiveDate::from_ymd_opt(day.year(), 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    start.map(|s| s.and_utc().timestamp_micros()).unwrap_or(t)
}

/// The start of the `g` period after the one starting at `start`.
pub fn next(start: i64, g: Granularity) -> i64 {
    use chrono::Months;
    const HOUR: i64 = 3_600_000_000;
    let Some(dt) = chrono::DateTime::from_timestamp_micros(start).map(|d| d.naive_utc()) else { return i64::MAX };
    let months = |n| dt.checked_add_months(Months::new(n)).map(|d| d.and_utc().timestamp_micros()).unwrap_or(i64::MAX);
    match g {
        Granularity::Hour => start.saturating_add(HOUR),
        Granularity::Day => start.saturating_add(24 * HOUR),
        Granularity::Week => start.saturating_add(7 * 24 * HOUR),
        Granularity::Month => months(1),
        Granularity::Quarter => months(3),
        Granularity::Year => months(12),
    }
}

/// A partition's name: the date its period starts (`2025-03-01`).
pub fn partition_name(start: i64) -> String {
    chrono::DateTime::from_timestamp_micros(start).map(|d| d.date_naive().to_string()).unwrap_or_default()
}

/// The start of the partition a name gives.
pub fn partition_start(name: &str) -> Option<i64> {
    chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc().timestamp_micros())
}

/// An instant in ISO form (`2025-03-01`, `2025-03-01 10:00[:00[.000]]`, with `T`, with `Z`
/// or `+00`), as µs since 1970, naive UTC.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00")).or_else(|| s.strip_suffix("+00:00")).unwrap_or(s);
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc().timestamp_micros())
}

/// Merges `[start, end)` ranges into ordered, disjoint ones.
pub fn merge_ranges(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_micros()
    }

    #[test]
    fn periods_start_where_postgresql_truncates() {
        let t = at("2025-08-14 13:45");
        assert_eq!(truncate(t, Granularity::Hour), at("2025-08-14 13:00"));
        assert_eq!(truncate(t, Granularity::Day), at("2025-08-14 00:00"));
        assert_eq!(truncate(t, Granularity::Week), at("2025-08-11 00:00"));
        assert_eq!(truncate(t, Granularity::Month), at("2025-08-01 00:00"));
        assert_eq!(truncate(t, Granularity::Quarter), at("2025-07-01 00:00"));
        assert_eq!(truncate(t, Granularity::Year), at("2025-01-01 00:00"));
        assert_eq!(next(at("2025-01-31 00:00"), Granularity::Day), at("2025-02-01 00:00"));
        assert_eq!(next(at("2025-11-01 00:00"), Granularity::Quarter), at("2026-02-01 00:00"));
        assert_eq!(partition_name(at("2025-03-01 00:00")), "2025-03-01");
        assert_eq!(partition_start("2025-03-01"), Some(at("2025-03-01 00:00")));
        assert_eq!(merge_ranges(vec![(5, 7), (1, 3), (3, 4)]), vec![(1, 4), (5, 7)]);
    }
}
