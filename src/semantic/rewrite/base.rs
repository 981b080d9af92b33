//! The aggregate every rewritten read stands on: the read's filters and group keys over the
//! narrowest base relation that has its columns, with the leaf aggregates its measures need.

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use super::super::CubeTable;
use super::super::barrier::{PolicyBarrier, leakproof};
use super::super::rollup::Routing;
use super::fan_trap::Leaves;
use super::route::{Noted, Route, route};
use super::scope::Scope;
use super::top_groups::TopGroups;
use crate::error::{Error, Result};

/// The leaf aggregates `measures` are computed from, each once.
pub(super) fn leaves_of<'a>(table: &CubeTable, measures: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut leaves = Vec::new();
    for m in measures {
        table.leaves_of(m, &mut leaves);
    }
    leaves
}

/// Filter → Aggregate over the narrowest base relation that has every column used: the
/// dimension filters, the group keys (aliased `__g_<i>`), the leaf aggregates (`__l_<key>`)
/// and any other aggregates (already aliased). Leaves of a cube whose rows repeat in that
/// base are aggregated apart and joined on ([`Leaves::join_repeated`]); a [`TopGroups`]
/// pre-filter applies when none does.
/// A rollup answers instead when one covers the read ([`route`]); the second value is the
/// routing note for EXPLAIN (for a table that has rollups).
pub(super) fn aggregate_base(s: &Scope, groups: &[Expr], leaves: &[String], others: Vec<Expr>, top: Option<TopGroups>, routing: &Routing) -> Result<(LogicalPlanBuilder, Option<Noted>)> {
    let routed = route(s, groups, leaves, &others, routing)?;
    let note = match routed {
        Some(Route { plan: Some((plan, id)), note }) => return Ok((plan, Some((note, Some(id))))),
        Some(Route { plan: None, note }) => Some((note, None)),
        None => None,
    };
    aggregate_lake(s, groups, leaves, others, top).map(|b| (b, note))
}

/// [`aggregate_base`] over the lake.
fn aggregate_lake(s: &Scope, groups: &[Expr], leaves: &[String], others: Vec<Expr>, top: Option<TopGroups>) -> Result<LogicalPlanBuilder> {
    let table = &s.table;
    let mut cols: Vec<String> = groups
        .iter()
        .chain(&s.pre)
        .chain(&others)
        .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    cols.extend(leaves.iter().map(|k| CubeTable::leaf_input(k)));
    cols.extend(policy_columns(table));
    let (joined, base) = table.base_for(cols.iter().map(String::as_str));
    let filtered = |plan: LogicalPlan| -> Result<LogicalPlanBuilder> {
        let (b, rest) = guard(table, LogicalPlanBuilder::from(plan), &s.pre)?;
        match conjunction(rest) {
            // A subquery in the filter (`WHERE store IN (SELECT store FROM retail …)`) becomes
            // a join with the subquery's rows, which may have the same column names: the base's
            // columns are then named by an alias of their own.
            Some(p) if has_subquery(&p) => b
                .alias(BASE)
                .and_then(|b| b.filter(qualified(p, BASE)?))
                .map_err(Error::from),
            Some(p) => b.filter(p).map_err(Error::from),
            None => Ok(b),
        }
    };
    let leaves = Leaves::split(table, leaves, &joined);
    let mut aggs: Vec<Expr> = leaves.plain.iter().map(|k| table.leaf_aggregate(k)).collect();
    aggs.extend(others);
    let group_exprs: Vec<Expr> = groups.iter().enumerate().map(|(i, g)| g.clone().alias(format!("__g_{i}"))).collect();
    // `TopGroups::find` only picks a time dimension as is, a column of the base.
    let top = top.filter(|_| leaves.repeated.is_empty()).and_then(|t| match &groups[t.key] {
        Expr::Column(c) => Some((t, c.clone())),
        _ => None,
    });
    let input = match top {
        Some((t, key)) => {
            let cols: Vec<String> = std::iter::once(&Expr::Column(key.clone()))
                .chain(&s.pre)
                .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
                .chain(policy_columns(table))
                .collect();
            let (_, narrow) = table.base_for(cols.iter().map(String::as_str));
            t.join(filtered(base.clone())?, filtered(narrow)?, key)?
        }
        None => filtered(base.clone())?,
    };
    if group_exprs.is_empty() && aggs.is_empty() && leaves.repeated.is_empty() {
        // Neither dimensions nor measures (`SELECT 1 FROM retail`, `EXISTS (SELECT 1 …)`): the
        // grain of no dimension, one row when the filters leave any, none otherwise.
        return input.limit(0, Some(1)).map_err(Error::from);
    }
    let aggregated = input.aggregate(group_exprs, aggs).map_err(Error::from)?;
    leaves.join_repeated(table, groups, aggregated, || filtered(base.clone()))
}

/// The base columns a table's row policy reads.
pub(super) fn policy_columns(table: &CubeTable) -> Vec<String> {
    table.policy.iter().flat_map(|p| p.column_refs().into_iter().map(|c| c.name.clone())).collect()
}

/// `b` with the table's row policy applied first, behind a [`PolicyBarrier`]: the policy's
/// filter and the read's filters that cannot fail ([`leakproof`]) below it, so that they
/// prune files together; the read's other filters are returned, for above it. Without a
/// policy, `b` and every filter.
pub(super) fn guard(table: &CubeTable, b: LogicalPlanBuilder, filters: &[Expr]) -> Result<(LogicalPlanBuilder, Vec<Expr>)> {
    let Some(policy) = &table.policy else { return Ok((b, filters.to_vec())) };
    let mut below = vec![policy.clone()];
    let mut above = Vec::new();
    for f in filters {
        for c in split_conjunction(f) {
            if leakproof(c) { below.push(c.clone()) } else { above.push(c.clone()) }
        }
    }
    let restricted = b.filter(conjunction(below).expect("the policy")).and_then(|b| b.build()).map_err(Error::from)?;
    Ok((LogicalPlanBuilder::from(PolicyBarrier::over(restricted)), above))
}

/// The alias of a base relation filtered by a subquery.
const BASE: &str = "__base";

pub(super) fn has_subquery(e: &Expr) -> bool {
    e.exists(|x| Ok(matches!(x, Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) | Expr::SetComparison(_))))
        .unwrap_or(true)
}

/// `e` with its unqualified columns (the base's; a subquery's own columns are inside its plan,
/// not here) qualified by `alias`.
fn qualified(e: Expr, alias: &str) -> datafusion::error::Result<Expr> {
    e.transform_up(|x| match x {
        Expr::Column(c) if c.relation.is_none() => Ok(Transformed::yes(Expr::Column(Column::new(Some(alias), c.name)))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}
