//! `pg_get_viewdef(view_oid [, pretty])` (psql's `\d+` on a cube): the view's definition
//! from pg_views, which lakecube fills with each cube's SQL. The lookup's aliases (`_v`, `_c`,
//! `_n`) are ones no client uses: with plain `c`, a client's `pg_get_viewdef(c.oid)` compared
//! the lookup's own `c.oid` with itself and answered the longest definition of any view.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, args, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "pg_get_viewdef", calls: &["pg_get_viewdef"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let a = args(expr);
    if function_name(expr).as_deref() != Some("pg_get_viewdef") || a.is_empty() {
        return Ok(Flow::Next);
    }
    *expr = parse_expr(&format!(
        "(SELECT max(_v.definition) FROM pg_catalog.pg_views _v \
         JOIN pg_catalog.pg_class _c ON _c.relname = _v.viewname \
         JOIN pg_catalog.pg_namespace _n ON _n.oid = _c.relnamespace AND _n.nspname = _v.schemaname \
         WHERE _c.oid = {})",
        a[0]
    ))?;
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn view_definitions_are_looked_up() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT pg_get_viewdef(c.oid, true) FROM t"),
            "SELECT (SELECT max(_v.definition) FROM pg_catalog.pg_views _v JOIN pg_catalog.pg_class _c ON _c.relname = _v.viewname JOIN pg_catalog.pg_namespace _n ON _n.oid = _c.relnamespace AND _n.nspname = _v.schemaname WHERE _c.oid = c.oid) FROM t"
        );
    }
}
