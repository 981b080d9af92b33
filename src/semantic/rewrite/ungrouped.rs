//! The ungrouped read: `Projection` over a chain over a cube scan (`SELECT region, revenue
//! FROM retail`), or the bare scan: measures at the grain of the dimensions it selects.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::base::{aggregate_base, leaves_of};
use super::grouped::dimension_use;
use super::scope::{Item, Scope, output_column, strip_alias, substitute};
use super::shaping::Shaping;
use super::top_groups::TopGroups;
use super::super::query::{CubeQuery, MeasureUse};
use super::super::rollup::Routing;
use crate::error::{Error, Result};

/// The ungrouped read: measures at the grain of the dimensions the projection selects.
pub(super) fn ungrouped(exprs: &[Expr], output: DFSchemaRef, s: Scope, shape: &Shaping, routing: &Routing) -> Result<(LogicalPlan, CubeQuery)> {
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
    let leaves = leaves_of(&table, &measures);
    // Measure filters drop groups, so a LIMIT's groups are no longer the first ones.
    let top = if s.post.is_empty() {
        TopGroups::find(
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
    let (mut b, route) = aggregate_base(&s, &keys, &leaves, vec![], top, routing)?;
    if let Some((note, id)) = route {
        q.rollup = Some(note);
        q.rollup_id = id;
    }
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
        out.push(output_column(v, qualifier, field));
    }
    let plan = b.project(out).and_then(|b| b.build()).map_err(Error::from)?;
    Ok((plan, q))
}

