//! `information_schema._pg_expandarray(array)` (pgjdbc's getPrimaryKeys, getIndexInfo): the
//! set of (x, n) element/position pairs, as an unnest of lakecube's list of them.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, args, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "expandarray", calls: &["_pg_expandarray"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let a = args(expr);
    if function_name(expr).as_deref() != Some("_pg_expandarray") || a.len() != 1 {
        return Ok(Flow::Next);
    }
    *expr = parse_expr(&format!("unnest(pg_expandarray_items({}))", a[0]))?;
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn expandarray_unnests_pairs() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT information_schema._pg_expandarray(i.indkey) FROM pg_index i"),
            "SELECT unnest(pg_expandarray_items(i.indkey)) FROM pg_index i"
        );
    }
}
