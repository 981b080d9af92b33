//! A scalar subquery that looks one row up in the catalogs (`(SELECT typcollation FROM
//! pg_type WHERE oid = a.atttypid)`, SQLAlchemy's column reflection) as `first_value(…)` of
//! it: DataFusion only plans correlated scalar subqueries that aggregate. Catalog lookups
//! are by key, so at most one row matches and the answer is the same.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor, visit_expressions_mut};

use super::{Context, Flow, Rule, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "catalog_lookup", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::Subquery(q) = expr
        && let Some(agg) = as_aggregate(q)
    {
        *expr = Expr::Subquery(Box::new(agg));
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

/// The lookup `q` as an aggregate, if it is one: a plain one-column SELECT over catalog
/// tables only, aggregating nothing yet.
pub(super) fn as_aggregate(q: &Query) -> Option<Query> {
    let SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let catalog_only = !sel.from.is_empty()
        && sel.from.iter().all(|t| {
            std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)).all(|r| match r {
                TableFactor::Table { name, .. } => {
                    let n = name.to_string().to_ascii_lowercase();
                    n.starts_with("pg_catalog.") || n.starts_with("pg_") || n.starts_with("information_schema.")
                }
                _ => false,
            })
        });
    let plain = sel.projection.len() == 1
        && sel.distinct.is_none()
        && matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && sel.having.is_none()
        && q.limit_clause.is_none()
        && q.with.is_none();
    if !(catalog_only && plain) {
        return None;
    }
    let (e, alias) = match &sel.projection[0] {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return None,
    };
    let mut has_aggregate = false;
    let mut probe = e.clone();
    let _ = visit_expressions_mut(&mut probe, |x| {
        if function_name(x).is_some_and(|n| matches!(n.as_str(), "max" | "min" | "sum" | "count" | "avg" | "array_agg" | "string_agg" | "first_value" | "bool_and" | "bool_or")) {
            has_aggregate = true;
        }
        ControlFlow::<()>::Continue(())
    });
    if has_aggregate {
        return None;
    }
    let agg = parse_expr(&format!("first_value({e})")).ok()?;
    let mut sel = sel.clone();
    sel.projection = vec![match alias {
        Some(alias) => SelectItem::ExprWithAlias { expr: agg, alias },
        None => SelectItem::UnnamedExpr(agg),
    }];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(sel));
    out.order_by = None;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn catalog_lookups_aggregate() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT (SELECT typcollation FROM pg_type WHERE oid = a.atttypid), (SELECT max(x) FROM pg_type), (SELECT y FROM lake.traffic) FROM pg_attribute a"),
            "SELECT (SELECT first_value(typcollation) FROM pg_type WHERE oid = a.atttypid), (SELECT max(x) FROM pg_type), (SELECT y FROM lake.traffic) FROM pg_attribute a"
        );
    }
}
