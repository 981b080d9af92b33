//! A subquery in ORDER BY, as PostgreSQL allows anywhere an expression may stand (Grafana's
//! table list orders by a CASE over a subquery). DataFusion decorrelates subqueries only in
//! projections, filters, joins and aggregates, and refuses the Sort. This rule computes such an ORDER BY key in a projection under the Sort, sorts on
//! that column and drops it again above.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Sort, SortExpr};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct SortSubquery;

impl AnalyzerRule for SortSubquery {
    fn name(&self) -> &str {
        "pg_sort_subquery"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Sort(sort) if sort.expr.iter().any(|s| has_subquery(&s.expr)) => move_keys_below(sort).map(Transformed::yes),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_) | Expr::SetComparison(_))))
        .unwrap_or(false)
}

fn move_keys_below(sort: Sort) -> Result<LogicalPlan> {
    let Sort { expr, input, fetch } = sort;
    let kept: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
    let mut computed = kept.clone();
    let mut keys = Vec::with_capacity(expr.len());
    for (i, key) in expr.into_iter().enumerate() {
        if has_subquery(&key.expr) {
            let name = format!("__lakecube_order_{i}");
            computed.push(key.expr.alias(&name));
            keys.push(SortExpr { expr: Expr::Column(Column::from_name(name)), ..key });
        } else {
            keys.push(key);
        }
    }
    let below = LogicalPlan::Projection(Projection::try_new(computed, input)?);
    let sorted = LogicalPlan::Sort(Sort { expr: keys, input: Arc::new(below), fetch });
    Ok(LogicalPlan::Projection(Projection::try_new(kept, Arc::new(sorted))?))
}

#[cfg(test)]
mod tests {
    use super::super::test::session;

    #[tokio::test]
    async fn order_by_may_hold_a_subquery() {
        let ctx = session();
        let sql = "SELECT a FROM (VALUES (1), (2), (3)) t(a) \
                   ORDER BY (SELECT count(*) FROM (VALUES (2), (3)) s(b) WHERE s.b = t.a) DESC, a DESC";
        let batches = ctx.sql(sql).await.expect("plans").collect().await.expect("runs");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).expect("prints").to_string();
        assert_eq!(text.lines().filter(|l| l.starts_with("| ")).skip(1).map(str::trim).collect::<Vec<_>>(), ["| 3 |", "| 2 |", "| 1 |"]);
    }
}
