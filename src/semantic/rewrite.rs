//! The cube rewrite: every read of a cube table in a logical plan becomes an aggregate over
//! the cube's base relation at the query's grain.
//!
//! It runs on the plan straight out of the SQL planner, before DataFusion's analyzer, so the
//! plan it produces is type-checked and optimized like any other. Three shapes are handled,
//! top-down, so that the outermost match wins:
//!
//! 1. **Grouped**: `Aggregate` over a chain of `Filter` / `SubqueryAlias` / `Projection` over a
//!    cube scan. Measure columns inside SUM/AVG/MIN/MAX/COUNT/MEASURE become the measure's own
//!    definition at the aggregate's grain (Cube's SQL API semantics); other aggregates
//!    (`count(DISTINCT store)`, `min(period)`, `count(*)`) run over the base rows.
//! 2. **Ungrouped**: `Projection` over such a chain (`SELECT region, revenue FROM retail`):
//!    measures at the grain of the selected dimensions.
//! 3. **Anything else** reading a cube table: the table at its finest grain (every dimension).
//!
//! Wrapped queries (Power BI's and Tableau's subqueries and CTEs) need nothing special: the
//! SQL planner inlines them, and the inner grouped read is matched where it stands.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, JoinType, NullEquality};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Aggregate, Cast, Expr, LogicalPlan, LogicalPlanBuilder, SortExpr};

use super::provider::CubeTableProvider;
use super::query::{CubeQuery, DimensionUse, MeasureUse};
use super::{CubeTable, MemberKind, Semantic};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{DimensionType, Granularity, MeasureType};

/// A rewritten plan and the cube queries found in it.
#[derive(Debug)]
pub struct Rewritten {
    pub plan: LogicalPlan,
    pub queries: Vec<CubeQuery>,
}

/// Rewrites every read of a cube table in `plan`.
pub fn rewrite(plan: LogicalPlan, sem: &Semantic) -> Result<Rewritten> {
    if sem.is_empty() {
        return Ok(Rewritten { plan, queries: vec![] });
    }
    let mut shaping = Vec::new();
    order_and_limit(&plan, &mut Shaping::default(), &mut shaping);
    let mut queries = Vec::new();
    let mut reads = 0usize;
    let mut failure: Option<Error> = None;
    let out = plan
        .transform_down(|node| {
            if failure.is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
            }
            // The reads come in the order `order_and_limit` found them.
            let mut shape = || {
                reads += 1;
                shaping.get(reads - 1).cloned().unwrap_or_default()
            };
            let attempt = match &node {
                LogicalPlan::Aggregate(a) => match chain(&a.input) {
                    Some(scope) => Some(scope.and_then(|s| grouped(a, s, &shape()))),
                    None => None,
                },
                LogicalPlan::Projection(p) => match chain(&p.input) {
                    Some(scope) => Some(scope.and_then(|s| ungrouped(&p.expr, p.schema.clone(), s, &shape()))),
                    None => None,
                },
                LogicalPlan::TableScan(_) => match chain(&node) {
                    Some(scope) => Some(scope.and_then(|s| {
                        let exprs: Vec<Expr> = node
                            .schema()
                            .iter()
                            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                            .collect();
                        ungrouped(&exprs, node.schema().clone(), s, &shape())
                    })),
                    None => None,
                },
                _ => None,
            };
            match attempt {
                None => Ok(Transformed::no(node)),
                Some(Ok((plan, q))) => {
                    queries.push(q);
                    Ok(Transformed::new(plan, true, TreeNodeRecursion::Jump))
                }
                Some(Err(e)) => {
                    failure = Some(e);
                    Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                }
            }
        })
        .map_err(Error::from)?;
    if let Some(e) = failure {
        return Err(e);
    }
    for (q, shape) in queries.iter_mut().zip(shaping) {
        q.order = shape.order;
        q.limit = shape.limit;
        q.offset = shape.offset;
    }
    Ok(Rewritten { plan: out.data, queries })
}

/// The ORDER BY, LIMIT and OFFSET standing over one cube read.
#[derive(Debug, Clone, Default)]
struct Shaping {
    /// ORDER BY as the client wrote it, for the cube query.
    order: Vec<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    /// When the rows a LIMIT keeps depend on nothing but an order (no filter, no HAVING
    /// between the LIMIT and the read): that order, in terms of the read's output columns
    /// (empty when any rows will do).
    top: Option<Vec<SortExpr>>,
}

/// Finds, in the same order as the rewrite visits them, the ORDER BY and LIMIT standing
/// directly over each cube read (through projections, HAVING filters and aliases).
fn order_and_limit(plan: &LogicalPlan, above: &mut Shaping, out: &mut Vec<Shaping>) {
    let matched = match plan {
        LogicalPlan::Aggregate(a) => chain(&a.input).is_some(),
        LogicalPlan::Projection(p) => chain(&p.input).is_some(),
        LogicalPlan::TableScan(_) => cube_table(plan).is_some(),
        _ => false,
    };
    if matched {
        out.push(above.clone());
        return;
    }
    let mut next = match plan {
        LogicalPlan::Limit(l) => {
            let fetch = match l.fetch.as_deref() {
                Some(Expr::Literal(v, _)) => v.to_string().parse().ok(),
                _ => None,
            };
            let skip = match l.skip.as_deref() {
                Some(Expr::Literal(v, _)) => v.to_string().parse().ok().filter(|s: &usize| *s > 0),
                _ => None,
            };
            Shaping { order: above.order.clone(), limit: fetch, offset: skip, top: fetch.map(|_| vec![]) }
        }
        LogicalPlan::Sort(s) => {
            let order = s.expr.iter().map(|e| format!("{}{}", e.expr, if e.asc { "" } else { " DESC" })).collect();
            // The first sort under a LIMIT decides which rows it keeps; a sort with a fetch
            // is a LIMIT of its own.
            let top = match (&above.top, s.fetch) {
                (_, Some(_)) => Some(s.expr.clone()),
                (Some(t), None) if t.is_empty() => Some(s.expr.clone()),
                (t, None) => t.clone(),
            };
            Shaping { order, limit: above.limit.or(s.fetch), offset: above.offset, top }
        }
        LogicalPlan::Projection(p) => {
            let top = map_sorts(&above.top, |c| Some(strip_alias(&p.expr[p.schema.index_of_column(c).ok()?]).clone()));
            Shaping { top, ..above.clone() }
        }
        LogicalPlan::SubqueryAlias(a) => {
            let top = map_sorts(&above.top, |c| {
                let i = a.schema.index_of_column(c).ok()?;
                Some(Expr::Column(Column::from(a.input.schema().qualified_field(i))))
            });
            Shaping { top, ..above.clone() }
        }
        // A filter between a LIMIT and the read (HAVING, or a WHERE over a wrapped query)
        // drops groups after the LIMIT's choice would have been made.
        LogicalPlan::Filter(_) => Shaping { top: None, ..above.clone() },
        _ => Shaping::default(),
    };
    for child in plan.inputs() {
        order_and_limit(child, &mut next, out);
    }
}

/// Rewrites the columns of sort expressions through a node below them (`None` when one does
/// not resolve).
fn map_sorts(sorts: &Option<Vec<SortExpr>>, column: impl Fn(&Column) -> Option<Expr>) -> Option<Vec<SortExpr>> {
    sorts
        .as_ref()?
        .iter()
        .map(|e| {
            let mut unresolved = false;
            let expr = e
                .expr
                .clone()
                .transform_up(|x| match &x {
                    Expr::Column(c) => match column(c) {
                        Some(y) => Ok(Transformed::yes(y)),
                        None => {
                            unresolved = true;
                            Ok(Transformed::no(x))
                        }
                    },
                    _ => Ok(Transformed::no(x)),
                })
                .ok()?
                .data;
            (!unresolved).then(|| SortExpr { expr, ..e.clone() })
        })
        .collect()
}

/// Resolves a shaping's order to a group key for [`TopGroups`]: the first sort key when it
/// is a group key, else (a LIMIT without ORDER BY) the first such key; either way only a
/// time dimension of the root cube (the facts) at its finest grain: a key with enough
/// distinct values for the pre-filter to pay for its extra scan, found without a join.
fn top_groups(shape: &Shaping, keys: &[Expr], key_of_sort: impl Fn(&Expr) -> Option<usize>, table: &CubeTable) -> Option<TopGroups> {
    let sorts = shape.top.as_ref()?;
    let rows = shape.limit? + shape.offset.unwrap_or(0);
    let is_time = |k: &Expr| {
        matches!(k, Expr::Column(c) if table.alias_of(&c.name) == Some(table.root.as_str())
            && table.member(&c.name).is_some_and(|m| matches!(m.kind, MemberKind::Dimension(DimensionType::Time))))
    };
    let (key, order) = match sorts.first() {
        Some(first) => (key_of_sort(&first.expr)?, Some((first.asc, first.nulls_first))),
        None => (keys.iter().position(is_time)?, None),
    };
    is_time(&keys[key]).then_some(TopGroups { key, order, rows })
}

/// The column of distinct values in the [`TopGroups`] pre-filter.
const TOP_VALUE: &str = "__top_value";

/// What a column name means inside a chain over a cube scan.
#[derive(Debug, Clone)]
enum Item {
    /// A row-level expression over the base relation.
    Dim(Expr),
    Measure(String),
    /// A column that cannot be used (why).
    Invalid(String),
}

struct Scope {
    table: Arc<CubeTable>,
    items: HashMap<String, Item>,
    /// Dimension filters, over the base relation.
    pre: Vec<Expr>,
    /// Predicates that reference measures, over scope names.
    post: Vec<Expr>,
    /// Filters as the client wrote them, for the cube query.
    filter_texts: Vec<String>,
}

fn cube_table(plan: &LogicalPlan) -> Option<Arc<CubeTable>> {
    let LogicalPlan::TableScan(s) = plan else { return None };
    let provider = source_as_provider(&s.source).ok()?;
    provider.downcast_ref::<CubeTableProvider>().map(|p| p.table.clone())
}

/// Walks a chain of Filter / SubqueryAlias / Projection down to a cube scan.
fn chain(plan: &LogicalPlan) -> Option<Result<Scope>> {
    match plan {
        LogicalPlan::TableScan(_) => {
            let table = cube_table(plan)?;
            let items = table
                .members
                .iter()
                .map(|m| {
                    let item = match m.kind {
                        MemberKind::Measure(_) => Item::Measure(m.name.clone()),
                        _ => Item::Dim(Expr::Column(Column::new_unqualified(&m.name))),
                    };
                    (m.name.clone(), item)
                })
                .collect();
            Some(Ok(Scope { table, items, pre: vec![], post: vec![], filter_texts: vec![] }))
        }
        LogicalPlan::SubqueryAlias(a) => chain(&a.input),
        LogicalPlan::Filter(f) => Some(chain(&f.input)?.and_then(|mut s| {
            for conj in split_conjunction(&f.predicate) {
                s.filter_texts.push(conj.to_string());
                let (e, has_measure) = substitute(conj, &s)?;
                if has_measure {
                    s.post.push(conj.clone());
                } else {
                    s.pre.push(e);
                }
            }
            Ok(s)
        })),
        LogicalPlan::Projection(p) => Some(chain(&p.input)?.and_then(|mut s| {
            let mut items = HashMap::new();
            for (e, (_, field)) in p.expr.iter().zip(p.schema.iter()) {
                let inner = strip_alias(e);
                let item = match inner {
                    Expr::Column(c) => s.items.get(&c.name).cloned().unwrap_or_else(|| Item::Invalid(format!("unknown column {}", c.name))),
                    other => match substitute(other, &s) {
                        Ok((x, false)) => Item::Dim(x),
                        Ok((_, true)) => Item::Invalid(format!(
                            "`{}` computes with a measure before aggregating; aggregate the measure instead (SUM(m), MEASURE(m))",
                            field.name()
                        )),
                        Err(e) => return Err(e),
                    },
                };
                items.insert(field.name().clone(), item);
            }
            s.items = items;
            Ok(s)
        })),
        _ => None,
    }
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

/// Replaces dimension columns by their base expressions; reports whether a measure was seen.
fn substitute(e: &Expr, s: &Scope) -> Result<(Expr, bool)> {
    let mut has_measure = false;
    let mut bad: Option<String> = None;
    let out = e
        .clone()
        .transform_up(|x| {
            if let Expr::Column(c) = &x {
                match s.items.get(&c.name) {
                    Some(Item::Dim(d)) => return Ok(Transformed::yes(d.clone())),
                    Some(Item::Measure(_)) => has_measure = true,
                    Some(Item::Invalid(why)) => bad = Some(why.clone()),
                    None => {}
                }
            }
            Ok(Transformed::no(x))
        })
        .map_err(Error::from)?
        .data;
    if let Some(why) = bad {
        return Err(Error::new(ErrorKind::FeatureNotSupported, why));
    }
    Ok((out, has_measure))
}

/// The measure a (possibly cast) column names, if any.
fn measure_of(e: &Expr, s: &Scope) -> Option<String> {
    match e {
        Expr::Column(c) => match s.items.get(&c.name) {
            Some(Item::Measure(m)) => Some(m.clone()),
            _ => None,
        },
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(datafusion::logical_expr::TryCast { expr, .. }) => measure_of(expr, s),
        Expr::Alias(a) => measure_of(&a.expr, s),
        _ => None,
    }
}

/// Which client aggregates a measure type accepts (after Cube's SQL API).
fn accepts(kind: MeasureType, func: &str, distinct: bool) -> bool {
    use MeasureType::*;
    match (func, distinct) {
        ("measure", _) => true,
        ("sum", false) => matches!(kind, Sum | Count | Number),
        ("count", false) => kind == Count,
        ("count", true) => kind == CountDistinct,
        ("avg", false) => matches!(kind, Avg | Number),
        ("min", false) => matches!(kind, Min | Number),
        ("max", false) => matches!(kind, Max | Number),
        _ => false,
    }
}

fn wrong_aggregate(measure: &str, kind: MeasureType, func: &str, distinct: bool) -> Error {
    let call = if distinct { format!("{}(DISTINCT {measure})", func.to_uppercase()) } else { format!("{}({measure})", func.to_uppercase()) };
    let fitting = match kind {
        MeasureType::Sum => format!("SUM({measure})"),
        MeasureType::Count => format!("COUNT({measure}) or SUM({measure})"),
        MeasureType::CountDistinct => format!("COUNT(DISTINCT {measure})"),
        MeasureType::Avg => format!("AVG({measure})"),
        MeasureType::Min => format!("MIN({measure})"),
        MeasureType::Max => format!("MAX({measure})"),
        MeasureType::Number => format!("SUM({measure})"),
    };
    Error::new(ErrorKind::InvalidAggregate, format!("{call} does not apply to measure `{measure}` of type {}", kind.name()))
        .with_hint(format!("`{measure}` is a {} measure: write {fitting} or MEASURE({measure}) for its value at the query's grain", kind.name()))
}

/// An aggregate of the client's query, resolved.
enum Agg {
    Measure { measure: String },
    /// Any other aggregate, over base rows.
    Other(Expr),
}

fn grouped(a: &Aggregate, s: Scope, shape: &Shaping) -> Result<(LogicalPlan, CubeQuery)> {
    if let Some(p) = s.post.first() {
        return Err(Error::new(ErrorKind::InvalidAggregate, format!("a measure cannot be filtered in WHERE: {p}"))
            .with_hint("filter measures in HAVING (HAVING SUM(revenue) > 1000)"));
    }
    let mut q = CubeQuery { cube: s.table.name.clone(), filters: s.filter_texts.clone(), ..Default::default() };
    let mut groups = Vec::new();
    for g in &a.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Err(Error::new(ErrorKind::FeatureNotSupported, "GROUPING SETS, ROLLUP and CUBE over cube tables are not supported yet")
                .with_hint("group by the dimensions and let the BI tool compute totals"));
        }
        let (e, has_measure) = substitute(g, &s)?;
        if has_measure {
            return Err(Error::new(ErrorKind::InvalidAggregate, format!("cannot group by a measure: {g}"))
                .with_hint("group by dimensions; measures are aggregated"));
        }
        q.dimensions.push(dimension_use(g, &e));
        groups.push(e);
    }
    let mut aggs = Vec::new();
    for e in &a.aggr_expr {
        let inner = strip_alias(e);
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(Error::new(ErrorKind::FeatureNotSupported, format!("unsupported aggregate over a cube table: {e}")));
        };
        let name = func.name().to_lowercase();
        let AggregateFunctionParams { args, distinct, filter, order_by, .. } = params;
        let measure = if args.len() == 1 { measure_of(&args[0], &s) } else { None };
        if let Some(m) = measure {
            let member = s.table.member(&m).expect("scope measures are members");
            let MemberKind::Measure(kind) = member.kind else { unreachable!("measure item") };
            if filter.is_some() || !order_by.is_empty() {
                return Err(Error::new(ErrorKind::FeatureNotSupported, format!("FILTER or ORDER BY inside an aggregate of measure `{m}` is not supported"))
                    .with_hint("filter the rows in WHERE instead"));
            }
            if !accepts(kind, &name, *distinct) {
                return Err(wrong_aggregate(&m, kind, &name, *distinct));
            }
            q.measures.push(MeasureUse { measure: m.clone(), wrapper: Some(name.clone()) });
            aggs.push(Agg::Measure { measure: m });
        } else {
            let mut any_measure = false;
            let mut new_args = Vec::new();
            for arg in args {
                let (x, hm) = substitute(arg, &s)?;
                any_measure |= hm;
                new_args.push(x);
            }
            if any_measure {
                return Err(Error::new(ErrorKind::InvalidAggregate, format!("measures can only be aggregated directly, not inside an expression: {inner}"))
                    .with_hint("write SUM(revenue) * 2 rather than SUM(revenue * 2)"));
            }
            let new_filter = match filter {
                Some(f) => Some(Box::new(substitute(f, &s)?.0)),
                None => None,
            };
            let new = Expr::AggregateFunction(AggregateFunction::new_udf(
                func.clone(),
                new_args,
                *distinct,
                new_filter,
                order_by.clone(),
                params.null_treatment,
            ));
            q.other_aggregates.push(inner.to_string());
            aggs.push(Agg::Other(new));
        }
    }
    let top = top_groups(
        shape,
        &groups,
        |e| match e {
            Expr::Column(c) => a.schema.index_of_column(c).ok().filter(|i| *i < groups.len()),
            _ => None,
        },
        &s.table,
    );
    let plan = build(&s, &groups, &aggs, a.schema.clone(), top)?;
    Ok((plan, q))
}

/// Builds Filter → Aggregate → Projection over the base relation for a grouped read. `output`
/// is the client's aggregate schema: group keys first, then one column per aggregate.
fn build(s: &Scope, groups: &[Expr], aggs: &[Agg], output: DFSchemaRef, top: Option<TopGroups>) -> Result<LogicalPlan> {
    let table = &s.table;
    let mut leaves = Vec::new();
    for a in aggs {
        if let Agg::Measure { measure, .. } = a {
            table.leaves_of(measure, &mut leaves);
        }
    }
    let others: Vec<Expr> = aggs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| if let Agg::Other(e) = a { Some(e.clone().alias(format!("__a_{i}"))) } else { None })
        .collect();
    let b = aggregate_base(s, groups, &leaves, others, top)?;
    let mut out = Vec::new();
    for (i, (qualifier, field)) in output.iter().enumerate() {
        let value = if i < groups.len() {
            Expr::Column(Column::new_unqualified(format!("__g_{i}")))
        } else {
            let k = i - groups.len();
            match &aggs[k] {
                Agg::Measure { measure, .. } => table.measure_value(measure).expect("measure has a value"),
                Agg::Other(_) => Expr::Column(Column::new_unqualified(format!("__a_{k}"))),
            }
        };
        let value = Expr::Cast(Cast::new(Box::new(value), field.data_type().clone()));
        out.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    b.project(out).and_then(|b| b.build()).map_err(Error::from)
}

/// The ungrouped read: measures at the grain of the dimensions the projection selects.
fn ungrouped(exprs: &[Expr], output: DFSchemaRef, s: Scope, shape: &Shaping) -> Result<(LogicalPlan, CubeQuery)> {
    let table = s.table.clone();
    let mut q = CubeQuery { cube: table.name.clone(), filters: s.filter_texts.clone(), ungrouped: true, ..Default::default() };
    // Group keys: every dimension-only projected expression, plus the dimensions used inside
    // expressions that mix measures and dimensions, plus those of measure filters.
    let mut keys: Vec<Expr> = Vec::new();
    let add_key = |e: Expr, keys: &mut Vec<Expr>| {
        if !keys.contains(&e) {
            keys.push(e);
        }
    };
    let mut measures: Vec<String> = Vec::new();
    for e in exprs.iter().chain(s.post.iter()) {
        let (sub, has_measure) = substitute(e, &s)?;
        if !has_measure {
            if !matches!(strip_alias(&sub), Expr::Literal(..)) && s.post.iter().all(|p| p != e) {
                add_key(strip_alias(&sub).clone(), &mut keys);
            }
            continue;
        }
        for c in e.column_refs() {
            match s.items.get(&c.name) {
                Some(Item::Measure(m)) => {
                    if !measures.contains(m) {
                        measures.push(m.clone());
                    }
                }
                Some(Item::Dim(d)) => add_key(d.clone(), &mut keys),
                _ => {}
            }
        }
    }
    for k in &keys {
        q.dimensions.push(dimension_use(k, k));
    }
    for m in &measures {
        q.measures.push(MeasureUse { measure: m.clone(), wrapper: None });
    }
    q.measure_filters = s.post.iter().map(|p| p.to_string()).collect();

    // Aggregate at the grain, then compute the projection over group keys and measure values.
    let mut leaves = Vec::new();
    for m in &measures {
        table.leaves_of(m, &mut leaves);
    }
    // Measure filters drop groups, so a LIMIT's groups are no longer the first ones.
    let top = if s.post.is_empty() {
        top_groups(
            shape,
            &keys,
            |e| match e {
                Expr::Column(c) => {
                    let i = output.index_of_column(c).ok()?;
                    let (sub, has_measure) = substitute(strip_alias(&exprs[i]), &s).ok()?;
                    if has_measure { None } else { keys.iter().position(|k| k == strip_alias(&sub)) }
                }
                _ => None,
            },
            &table,
        )
    } else {
        None
    };
    let mut b = aggregate_base(&s, &keys, &leaves, vec![], top)?;
    // Over the aggregate: a dimension expression is its group key; a measure is its value.
    let over_groups = |e: &Expr| -> Result<Expr> {
        let (sub, _) = substitute(e, &s)?;
        if let Some(i) = keys.iter().position(|k| k == strip_alias(&sub)) {
            return Ok(Expr::Column(Column::new_unqualified(format!("__g_{i}"))));
        }
        e.clone()
            .transform_up(|x| {
                if let Expr::Column(c) = &x {
                    match s.items.get(&c.name) {
                        Some(Item::Measure(m)) => return Ok(Transformed::yes(table.measure_value(m).expect("measure value"))),
                        Some(Item::Dim(d)) => {
                            if let Some(i) = keys.iter().position(|k| k == d) {
                                return Ok(Transformed::yes(Expr::Column(Column::new_unqualified(format!("__g_{i}")))));
                            }
                        }
                        _ => {}
                    }
                }
                Ok(Transformed::no(x))
            })
            .map(|t| t.data)
            .map_err(Error::from)
    };
    if !s.post.is_empty() {
        let preds = s.post.iter().map(&over_groups).collect::<Result<Vec<_>>>()?;
        b = b.filter(conjunction(preds).expect("non-empty")).map_err(Error::from)?;
    }
    let mut out = Vec::new();
    for (e, (qualifier, field)) in exprs.iter().zip(output.iter()) {
        let v = over_groups(strip_alias(e))?;
        let v = Expr::Cast(Cast::new(Box::new(v), field.data_type().clone()));
        out.push(v.alias_qualified(qualifier.cloned(), field.name()));
    }
    let plan = b.project(out).and_then(|b| b.build()).map_err(Error::from)?;
    Ok((plan, q))
}

/// A LIMIT over a grouped read whose rows are the first groups in the order of one group key
/// `g` (or in any order). Those groups can only have the first `rows` distinct values of `g`
/// in that order (each value makes at least one group), so the read first finds those
/// values — a cheap aggregate over `g` alone — and aggregates only the rows that have one:
/// an inner join on `g`, NULL matching NULL. Every group it keeps is whole, so the answer is
/// the same; `SELECT … ORDER BY period DESC LIMIT 1000` aggregates a few weeks instead of
/// years, and the join's bounds on `g` let the scan skip the other files.
#[derive(Debug, Clone, Copy)]
struct TopGroups {
    /// Which group key.
    key: usize,
    /// Ascending, nulls first; `None` when any groups will do, so that any `rows` distinct
    /// values will, found without a top-k (DataFusion's limit on a distinct aggregation, about 8×
    /// cheaper in CPU at sf1; the scan still reads every value).
    order: Option<(bool, bool)>,
    /// LIMIT plus OFFSET.
    rows: usize,
}

/// Filter → Aggregate over the narrowest base relation that has every column used: the
/// dimension filters, the group keys (aliased `__g_<i>`), the leaf aggregates (`__l_<key>`)
/// and any other aggregates (already aliased).
fn aggregate_base(s: &Scope, groups: &[Expr], leaves: &[String], others: Vec<Expr>, top: Option<TopGroups>) -> Result<LogicalPlanBuilder> {
    let table = &s.table;
    let mut cols: Vec<String> = groups
        .iter()
        .chain(&s.pre)
        .chain(&others)
        .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    cols.extend(leaves.iter().map(|k| CubeTable::leaf_input(k)));
    let (joined, base) = table.base_for(cols.iter().map(String::as_str));
    let filtered = |plan: LogicalPlan| -> Result<LogicalPlanBuilder> {
        let b = LogicalPlanBuilder::from(plan);
        match conjunction(s.pre.clone()) {
            Some(p) => b.filter(p).map_err(Error::from),
            None => Ok(b),
        }
    };
    // Leaves whose cube's rows repeat in this base (the fan trap), by cube: summed or counted
    // as they are, they would count a row once per repetition. Min, max and count distinct
    // do not change under repetition.
    let mut repeated: Vec<(String, Vec<String>)> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    for k in leaves {
        let alias = table.alias_of(&CubeTable::leaf_input(k)).unwrap_or_default().to_string();
        let idempotent = matches!(table.leaf_kind(k), MeasureType::Min | MeasureType::Max | MeasureType::CountDistinct);
        if !idempotent && table.multiplied(&alias, &joined) {
            match repeated.iter_mut().find(|(a, _)| *a == alias) {
                Some((_, ks)) => ks.push(k.clone()),
                None => repeated.push((alias, vec![k.clone()])),
            }
        } else {
            plain.push(k.clone());
        }
    }
    let mut aggs: Vec<Expr> = plain.iter().map(|k| table.leaf_aggregate(k)).collect();
    aggs.extend(others);
    let group_exprs: Vec<Expr> = groups.iter().enumerate().map(|(i, g)| g.clone().alias(format!("__g_{i}"))).collect();
    // `top_groups` only picks a time dimension as is, a column of the base: the rows join
    // on it directly, without a projection (wide projections are what physical planning
    // spends most on).
    let top = top.filter(|_| repeated.is_empty()).and_then(|t| match &groups[t.key] {
        Expr::Column(c) => Some((t, c.clone())),
        _ => None,
    });
    let input = match top {
        Some((t, key)) => {
            let g = Expr::Column(key.clone());
            let cols: Vec<String> = std::iter::once(&g).chain(&s.pre).flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone())).collect();
            let (_, narrow) = table.base_for(cols.iter().map(String::as_str));
            let distinct = filtered(narrow)?.aggregate(vec![g.alias(TOP_VALUE)], Vec::<Expr>::new()).map_err(Error::from)?;
            let values = match t.order {
                Some((asc, nulls_first)) => distinct.sort(vec![Expr::Column(Column::new_unqualified(TOP_VALUE)).sort(asc, nulls_first)]),
                None => Ok(distinct),
            }
            .and_then(|b| b.limit(0, Some(t.rows)))
            .and_then(|b| b.build())
            .map_err(Error::from)?;
            filtered(base.clone())?
                .join_detailed(values, JoinType::Inner, (vec![key], vec![Column::new_unqualified(TOP_VALUE)]), None, NullEquality::NullEqualsNull)
                .map_err(Error::from)?
        }
        None => filtered(base.clone())?,
    };
    let mut b = input.aggregate(group_exprs, aggs).map_err(Error::from)?;
    // Each repeated cube: its rows once per (group, primary key) — DISTINCT over the group
    // keys, the key and the leaf inputs — then aggregated per group, and joined back on the
    // group keys (NULL groups matching NULL groups).
    for (n, (alias, keys)) in repeated.iter().enumerate() {
        let group_col = |i: usize| format!("__g{n}_{i}");
        let mut project: Vec<Expr> = groups.iter().enumerate().map(|(i, g)| g.clone().alias(group_col(i))).collect();
        project.extend(table.primary_key_columns(alias)?.iter().map(|c| Expr::Column(Column::new_unqualified(c))));
        project.extend(keys.iter().map(|k| Expr::Column(Column::new_unqualified(CubeTable::leaf_input(k)))));
        let once = filtered(base.clone())?
            .project(project)
            .and_then(|b| b.distinct())
            .and_then(|b| {
                b.aggregate(
                    (0..groups.len()).map(|i| Expr::Column(Column::new_unqualified(group_col(i)))).collect::<Vec<_>>(),
                    keys.iter().map(|k| table.leaf_aggregate(k)).collect::<Vec<_>>(),
                )
            })
            .and_then(|b| b.build())
            .map_err(Error::from)?;
        b = if groups.is_empty() {
            b.cross_join(once).map_err(Error::from)?
        } else {
            let left: Vec<Column> = (0..groups.len()).map(|i| Column::new_unqualified(format!("__g_{i}"))).collect();
            let right: Vec<Column> = (0..groups.len()).map(|i| Column::new_unqualified(group_col(i))).collect();
            b.join_detailed(once, JoinType::Inner, (left, right), None, NullEquality::NullEqualsNull).map_err(Error::from)?
        };
    }
    Ok(b)
}

/// Describes a group key for the cube query: a member, a time member at a granularity, or
/// an expression.
fn dimension_use(client: &Expr, base: &Expr) -> DimensionUse {
    let members: Vec<String> = base.column_refs().iter().map(|c| c.name.clone()).collect();
    // Tableau casts truncated dates: CAST(DATE_TRUNC('MONTH', period) AS DATE).
    let inner = match strip_alias(base) {
        Expr::Cast(Cast { expr, .. }) if matches!(expr.as_ref(), Expr::ScalarFunction(f) if f.func.name() == "date_trunc") => expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::Column(c) => DimensionUse::Member(c.name.clone()),
        Expr::ScalarFunction(f) if f.func.name() == "date_trunc" && f.args.len() == 2 => {
            let unit = match &f.args[0] {
                Expr::Literal(v, _) => v.to_string().trim_matches('\'').to_lowercase(),
                _ => String::new(),
            };
            let g = match unit.as_str() {
                "hour" => Some(Granularity::Hour),
                "day" => Some(Granularity::Day),
                "week" => Some(Granularity::Week),
                "month" => Some(Granularity::Month),
                "quarter" => Some(Granularity::Quarter),
                "year" => Some(Granularity::Year),
                _ => None,
            };
            match (g, &f.args[1]) {
                (Some(granularity), Expr::Column(c)) => DimensionUse::Time { member: c.name.clone(), granularity },
                _ => DimensionUse::Expr { text: client.to_string(), members },
            }
        }
        _ => DimensionUse::Expr { text: client.to_string(), members },
    }
}

