//! `col_description(table_oid, column_number)` (psql's `\d+`, Metabase, DBeaver): a lookup
//! of the column's comment in pg_description, which lakecube fills from the cube
//! definitions' descriptions. The lookup's alias (`_d`) is one no client uses, so the
//! arguments' own aliases (`d.oid`) still name the client's relations.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, args, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "col_description", calls: &["col_description"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let a = args(expr);
    if function_name(expr).as_deref() != Some("col_description") || a.len() != 2 {
        return Ok(Flow::Next);
    }
    *expr = parse_expr(&format!(
        "(SELECT max(_d.description) FROM pg_catalog.pg_description _d \
         WHERE _d.objoid = {} AND _d.objsubid = {} AND _d.classoid = 1259)",
        a[0], a[1]
    ))?;
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn column_comments_are_looked_up() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT col_description(d.oid, a.attnum) FROM t"),
            "SELECT (SELECT max(_d.description) FROM pg_catalog.pg_description _d WHERE _d.objoid = d.oid AND _d.objsubid = a.attnum AND _d.classoid = 1259) FROM t"
        );
    }
}
