//! What the names mean inside a chain of `Filter` / `SubqueryAlias` / `Projection` over a
//! cube scan: the [`Scope`] a read is rewritten in, and the substitution of dimension columns
//! by their expressions over the cube's base relation.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use datafusion::common::{Column, TableReference};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan};

use super::super::provider::CubeTableProvider;
use super::super::{CubeTable, MemberKind};
use crate::error::{Error, ErrorKind, Result};

/// What a column name means inside a chain over a cube scan.
#[derive(Debug, Clone)]
pub(super) enum Item {
    /// A row-level expression over the base relation.
    Dim(Expr),
    Measure(String),
    /// A column that cannot be used (why).
    Invalid(String),
}

pub(super) struct Scope {
    pub(super) table: Arc<CubeTable>,
    pub(super) items: HashMap<String, Item>,
    /// Dimension filters, over the base relation.
    pub(super) pre: Vec<Expr>,
    /// Predicates that reference measures, over scope names.
    pub(super) post: Vec<Expr>,
    /// Filters as the client wrote them, for the cube query.
    pub(super) filter_texts: Vec<String>,
}

fn cube_table(plan: &LogicalPlan) -> Option<Arc<CubeTable>> {
    let LogicalPlan::TableScan(s) = plan else { return None };
    let provider = source_as_provider(&s.source).ok()?;
    provider.downcast_ref::<CubeTableProvider>().map(|p| p.table.clone())
}

/// Walks a chain of Filter / SubqueryAlias / Projection down to a cube scan.
pub(super) fn chain(plan: &LogicalPlan) -> Option<Result<Scope>> {
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

pub(super) fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

/// Replaces dimension columns by their base expressions; reports whether a measure was seen.
pub(super) fn substitute(e: &Expr, s: &Scope) -> Result<(Expr, bool)> {
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
pub(super) fn measure_of(e: &Expr, s: &Scope) -> Option<String> {
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


/// `value` as the client's column `field` of the read's output: cast to its type, under its
/// qualifier and name (the rewritten read keeps the schema the SQL planner gave it).
pub(super) fn output_column(value: Expr, qualifier: Option<&TableReference>, field: &Field) -> Expr {
    Expr::Cast(Cast::new(Box::new(value), field.data_type().clone())).alias_qualified(qualifier.cloned(), field.name())
}
