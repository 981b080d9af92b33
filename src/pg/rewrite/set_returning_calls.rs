//! Set-returning functions in a select list, which PostgreSQL expands into one row per value:
//! `generate_series(array_lower(conkey, 1), array_upper(conkey, 1)) AS i` (psqlODBC's
//! SQLForeignKeys numbers the key columns so) and `regexp_split_to_table(prosrc, '\W+')`
//! (pgcli's casing query). DataFusion's `generate_series` in an expression returns a list and
//! it has no `regexp_split_to_table`: both become the `unnest` of their list, which DataFusion
//! expands as PostgreSQL does (several in one select list are zipped, as PostgreSQL 10+ zips
//! them). In FROM they are table functions and left alone.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "set_returning_calls", calls: &["generate_series", "regexp_split_to_table"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let list = match function_name(expr).as_deref() {
        Some("generate_series") => "generate_series",
        Some("regexp_split_to_table") => "regexp_split_to_array",
        _ => return Ok(Flow::Next),
    };
    let Expr::Function(f) = expr else { return Ok(Flow::Next) };
    // `f.args` is displayed with its parentheses.
    *expr = parse_expr(&format!("unnest({list}{})", f.args))?;
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn set_returning_calls_unnest_their_lists() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT cn.oid, generate_series(array_lower(conkey, 1), array_upper(conkey, 1)) AS i FROM pg_constraint cn"),
            "SELECT cn.oid, unnest(generate_series(array_lower(conkey, 1), array_upper(conkey, 1))) AS i FROM pg_constraint cn"
        );
        assert_eq!(
            rewritten_by(&super::RULE, r"SELECT pg_catalog.regexp_split_to_table(prosrc, '\W+') AS word FROM pg_proc"),
            r"SELECT unnest(regexp_split_to_array(prosrc, '\W+')) AS word FROM pg_proc"
        );
        assert_eq!(rewritten_by(&super::RULE, "SELECT i FROM generate_series(1, 3) AS i"), "SELECT i FROM generate_series(1, 3) AS i");
    }
}
