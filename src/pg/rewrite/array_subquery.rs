//! `ARRAY(subquery)`, which DataFusion lacks (psql's `\du` role memberships, pgjdbc):
//! `ARRAY(SELECT e FROM … [ORDER BY …])` becomes `(SELECT array_agg(e ORDER BY …) FROM …)`,
//! which keeps correlated references where they were (DataFusion decorrelates such
//! aggregate subqueries); other shapes aggregate over the subquery as a derived table.

use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, GroupByExpr, Query, SelectItem, SetExpr};

use super::{Context, Flow, Rule, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "array_subquery", calls: &["array"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if function_name(expr).as_deref() != Some("array") {
        return Ok(Flow::Next);
    }
    if let Expr::Function(f) = expr
        && let FunctionArguments::Subquery(q) = &f.args
    {
        *expr = array_agg(q)?;
    }
    Ok(Flow::Done)
}

fn array_agg(q: &Query) -> Result<Expr> {
    if let SetExpr::Select(sel) = q.body.as_ref()
        && sel.projection.len() == 1
        && sel.distinct.is_none()
        && matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && sel.having.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.with.is_none()
    {
        let e = match &sel.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
            _ => None,
        };
        if let Some(e) = e {
            let order = q.order_by.as_ref().map(|o| format!(" {o}")).unwrap_or_default();
            let mut sel = sel.clone();
            sel.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!("array_agg({e}{order})"))?)];
            let mut inner = q.clone();
            inner.body = Box::new(SetExpr::Select(sel));
            inner.order_by = None;
            return Ok(Expr::Subquery(Box::new(inner)));
        }
    }
    parse_expr(&format!("(SELECT array_agg(_a._v) FROM ({q}) AS _a(_v))"))
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn array_subqueries_aggregate() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON m.roleid = b.oid WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r"),
            "SELECT (SELECT array_agg(b.rolname ORDER BY 1) FROM pg_auth_members m JOIN pg_roles b ON m.roleid = b.oid WHERE m.member = r.oid) FROM pg_roles r"
        );
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT ARRAY(SELECT DISTINCT x FROM t)"),
            "SELECT (SELECT array_agg(_a._v) FROM (SELECT DISTINCT x FROM t) AS _a (_v))"
        );
    }
}
