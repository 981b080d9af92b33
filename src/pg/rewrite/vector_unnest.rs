//! `unnest(indkey)` and `generate_subscripts(indkey, 1)` side by side in a select list
//! (SQLAlchemy's key and index reflection): the catalogs' vector columns are read as lists
//! by `pg_vector_items()`, and `generate_subscripts` (which DataFusion lacks) becomes the
//! unnest of 1..n, zipped with the other unnest as PostgreSQL zips set-returning functions.
//! Lists are one-dimensional: subscripts of dimension 1 are 1..n, of any other none.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, VECTOR_COLUMNS, args, function_name, int_literal, is_column_of, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "vector_unnest", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let Some(name) = function_name(expr) else { return Ok(Flow::Next) };
    let a = args(expr);
    let list = |e: &Expr| if is_column_of(e, VECTOR_COLUMNS) { format!("pg_vector_items({e})") } else { e.to_string() };
    match (name.as_str(), a.as_slice()) {
        ("unnest", [e]) if is_column_of(e, VECTOR_COLUMNS) => {
            *expr = parse_expr(&format!("unnest({})", list(e)))?;
            Ok(Flow::Done)
        }
        ("generate_subscripts", [e, dim]) => {
            let n = format!("CAST(coalesce(array_length({}), 0) AS BIGINT)", list(e));
            let dim = match int_literal(dim) {
                Some(d) => d.to_string(),
                None => dim.to_string(),
            };
            *expr = parse_expr(&format!("unnest(range(CAST(1 AS BIGINT), CASE WHEN {dim} = 1 THEN {n} + 1 ELSE CAST(1 AS BIGINT) END))"))?;
            Ok(Flow::Done)
        }
        _ => Ok(Flow::Next),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn vectors_unnest_as_lists() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1), unnest(other) FROM pg_index i"),
            "SELECT unnest(pg_vector_items(i.indkey)), unnest(range(CAST(1 AS BIGINT), CASE WHEN 1 = 1 THEN CAST(coalesce(array_length(pg_vector_items(i.indkey)), 0) AS BIGINT) + 1 ELSE CAST(1 AS BIGINT) END)), unnest(other) FROM pg_index i"
        );
    }
}
