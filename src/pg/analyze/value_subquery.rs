//! `EXISTS (…)` and `x IN (SELECT …)` where a value is computed — a select list, a CASE, an
//! ORDER BY key (which [`super::sort_subquery`] moves into a projection first) — as PostgreSQL
//! allows: catalog browsers select `EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid =
//! c.oid)`, Grafana orders by `CASE WHEN x IN (SELECT …)`. DataFusion decorrelates these
//! only as WHERE conjuncts and otherwise fails at execution ("Physical plan does not support
//! logical expression Exists"). This rule (before type coercion) writes them as scalar
//! subqueries of counts, which DataFusion decorrelates in a projection (correlated by
//! equality or not at all), keeping SQL's three-valued IN:
//!
//! - `EXISTS (q)` is `(SELECT count(*) FROM q) > 0`;
//! - `x IN (SELECT c FROM q)`, for a column `x`, is true when some `c = x`, false when `q` is
//!   empty, NULL when `x` is NULL or some `c` is, false otherwise; `NOT IN` its negation.
//!
//! `IN` of an expression other than a column is left as it is, and so is a subquery inside an
//! aggregate's argument (DataFusion decorrelates scalar subqueries in projections and filters).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ExprSchema, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Projection, Subquery, lit, when};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct ValueSubquery;

impl AnalyzerRule for ValueSubquery {
    fn name(&self) -> &str {
        "pg_value_subquery"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Projection(p) if p.expr.iter().any(has_predicate_subquery) => {
                let schema = p.input.schema().clone();
                let mut changed = false;
                let mut exprs = Vec::with_capacity(p.expr.len());
                for e in p.expr {
                    let name = e.schema_name().to_string();
                    let t = e.transform_up(|x| rewrite(x, &schema))?;
                    changed |= t.transformed;
                    // The projection's column keeps its name.
                    exprs.push(if t.transformed && t.data.schema_name().to_string() != name { t.data.alias(name) } else { t.data });
                }
                let projection = LogicalPlan::Projection(Projection::try_new(exprs, p.input)?);
                Ok(if changed { Transformed::yes(projection) } else { Transformed::no(projection) })
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

fn has_predicate_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::InSubquery(_) | Expr::Exists(_)))).unwrap_or(false)
}

fn rewrite(e: Expr, outer: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::Exists(Exists { subquery, negated }) => {
            let n = count_of(&subquery, None)?;
            Ok(Transformed::yes(if negated { n.eq(lit(0i64)) } else { n.gt(lit(0i64)) }))
        }
        Expr::InSubquery(InSubquery { expr, subquery, negated }) => {
            let Expr::Column(x) = expr.as_ref() else {
                return Ok(Transformed::no(Expr::InSubquery(InSubquery { expr, subquery, negated })));
            };
            let field = outer.field_from_column(x)?;
            let outer_x = Expr::OuterReferenceColumn(Arc::clone(field), x.clone());
            let c = Expr::Column(Column::from(subquery.subquery.schema().qualified_field(0)));
            let matches = count_of(&subquery, Some((c.clone().eq(outer_x.clone()), Some(outer_x))))?;
            let total = count_of(&subquery, None)?;
            let nulls = count_of(&subquery, Some((c.is_null(), None)))?;
            let unknown = Expr::Literal(ScalarValue::Boolean(None), None);
            let value = when(matches.gt(lit(0i64)), lit(true))
                .when(total.eq(lit(0i64)), lit(false))
                .when(Expr::Column(x.clone()).is_null().or(nulls.gt(lit(0i64))), unknown)
                .otherwise(lit(false))?;
            Ok(Transformed::yes(if negated { Expr::Not(Box::new(value)) } else { value }))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// `(SELECT count(*) FROM q [WHERE filter])` as a scalar subquery, with `q`'s outer references
/// and the filter's (`outer`).
fn count_of(q: &Subquery, filter: Option<(Expr, Option<Expr>)>) -> Result<Expr> {
    let mut outer_ref_columns = q.outer_ref_columns.clone();
    let mut plan = LogicalPlanBuilder::from(q.subquery.as_ref().clone());
    if let Some((predicate, outer)) = filter {
        plan = plan.filter(predicate)?;
        outer_ref_columns.extend(outer);
    }
    let plan = plan.aggregate(Vec::<Expr>::new(), vec![count(lit(1i64)).alias("count")])?.build()?;
    Ok(Expr::ScalarSubquery(Subquery { subquery: Arc::new(plan), outer_ref_columns, spans: q.spans.clone() }))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn exists_in_a_select_list() {
        assert_eq!(answer("SELECT EXISTS (SELECT 1)").await, "true");
        assert_eq!(answer("SELECT NOT EXISTS (SELECT 1 WHERE false)").await, "true");
        // Correlated by equality, as catalog browsers write it.
        assert_eq!(
            answer("SELECT string_agg(e, ',' ORDER BY a) FROM (SELECT a, CAST(EXISTS (SELECT 1 FROM (VALUES (2)) s(b) WHERE s.b = t.a) AS text) e FROM (VALUES (1), (2), (3)) t(a)) x").await,
            "false,true,false"
        );
    }

    #[tokio::test]
    async fn in_a_select_list_is_three_valued() {
        let q = |values: &str, list: &str| {
            format!("SELECT string_agg(v, ',' ORDER BY a NULLS LAST) FROM (SELECT a, coalesce(CAST(a IN (SELECT b FROM (VALUES {list}) s(b)) AS text), 'null') v FROM (VALUES {values}) t(a)) x")
        };
        assert_eq!(answer(&q("(1), (2), (NULL)", "(2), (3)")).await, "false,true,null");
        assert_eq!(answer(&q("(1), (2)", "(2), (NULL)")).await, "null,true");
        assert_eq!(answer(&q("(1), (NULL)", "(2)")).await, "false,null");
        // An empty list: false, even for NULL.
        assert_eq!(answer("SELECT string_agg(v, ',') FROM (SELECT CAST(a IN (SELECT 1 WHERE false) AS text) v FROM (VALUES (1), (NULL)) t(a)) x").await, "false,false");
        assert_eq!(answer("SELECT string_agg(v, ',' ORDER BY a) FROM (SELECT a, CAST(a NOT IN (SELECT 2) AS text) v FROM (VALUES (1), (2)) t(a)) x").await, "true,false");
    }

    #[tokio::test]
    async fn in_an_order_by_case() {
        assert_eq!(
            answer("SELECT a FROM (VALUES (1), (2), (3)) AS t(a) ORDER BY CASE WHEN a IN (SELECT 3) THEN 0 ELSE 1 END, a LIMIT 1").await,
            "3"
        );
    }
}
