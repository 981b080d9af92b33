//! The ORDER BY, LIMIT and OFFSET standing over a cube read, carried down to it.

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};

use super::scope::strip_alias;
use crate::semantic::query::CubeQuery;

/// The ORDER BY, LIMIT and OFFSET standing over one cube read.
#[derive(Debug, Clone, Default)]
pub(super) struct Shaping {
    /// ORDER BY as the client wrote it, for the cube query.
    pub(super) order: Vec<String>,
    pub(super) limit: Option<usize>,
    pub(super) offset: Option<usize>,
    /// When the rows a LIMIT keeps depend on nothing but an order (no filter, no HAVING
    /// between the LIMIT and the read): that order, in terms of the read's output columns
    /// (empty when any rows will do).
    pub(super) top: Option<Vec<SortExpr>>,
}

impl Shaping {
    /// The shaping that stands over the inputs of `plan`, a node that is not a cube read:
    /// ORDER BY and LIMIT pass down through projections, HAVING filters and aliases (their
    /// sort keys rewritten into the names below); any other node starts afresh.
    pub(super) fn below(&self, plan: &LogicalPlan) -> Shaping {
        match plan {
            LogicalPlan::Limit(l) => {
                let fetch = match l.fetch.as_deref() {
                    Some(Expr::Literal(v, _)) => v.to_string().parse().ok(),
                    _ => None,
                };
                let skip = match l.skip.as_deref() {
                    Some(Expr::Literal(v, _)) => v.to_string().parse().ok().filter(|s: &usize| *s > 0),
                    _ => None,
                };
                Shaping { order: self.order.clone(), limit: fetch, offset: skip, top: fetch.map(|_| vec![]) }
            }
            LogicalPlan::Sort(s) => {
                let order = s.expr.iter().map(|e| format!("{}{}", e.expr, if e.asc { "" } else { " DESC" })).collect();
                // The first sort under a LIMIT decides which rows it keeps; a sort with a fetch
                // is a LIMIT of its own.
                let top = match (&self.top, s.fetch) {
                    (_, Some(_)) => Some(s.expr.clone()),
                    (Some(t), None) if t.is_empty() => Some(s.expr.clone()),
                    (t, None) => t.clone(),
                };
                Shaping { order, limit: self.limit.or(s.fetch), offset: self.offset, top }
            }
            LogicalPlan::Projection(p) => {
                let top = map_sorts(&self.top, |c| Some(strip_alias(&p.expr[p.schema.index_of_column(c).ok()?]).clone()));
                Shaping { top, ..self.clone() }
            }
            LogicalPlan::SubqueryAlias(a) => {
                let top = map_sorts(&self.top, |c| {
                    let i = a.schema.index_of_column(c).ok()?;
                    Some(Expr::Column(Column::from(a.input.schema().qualified_field(i))))
                });
                Shaping { top, ..self.clone() }
            }
            // A filter between a LIMIT and the read (HAVING, or a WHERE over a wrapped query)
            // drops groups after the LIMIT's choice would have been made.
            LogicalPlan::Filter(_) => Shaping { top: None, ..self.clone() },
            _ => Shaping::default(),
        }
    }

    /// Gives a cube query the ORDER BY, LIMIT and OFFSET over its read.
    pub(super) fn describe(&self, q: &mut CubeQuery) {
        q.order = self.order.clone();
        q.limit = self.limit;
        q.offset = self.offset;
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

