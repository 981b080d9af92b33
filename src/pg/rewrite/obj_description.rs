//! `obj_description(oid [, catalog])`: table and schema comments from pg_description (psql's
//! `\dt+` and `\dn+`, DBeaver, Metabase), filtered by the catalog's classoid when it is named.
//! The lookup's alias (`_d`) is one no client uses, so an argument's `d.oid` keeps its meaning.

use datafusion::sql::sqlparser::ast::Expr;

use super::{Context, Flow, Rule, args, function_name, parse_expr, string_literal};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "obj_description", calls: &["obj_description"], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let a = args(expr);
    if function_name(expr).as_deref() != Some("obj_description") || a.is_empty() {
        return Ok(Flow::Next);
    }
    let class = a.get(1).and_then(string_literal).and_then(|c| classoid(&c));
    let class_filter = class.map(|c| format!(" AND _d.classoid = {c}")).unwrap_or_default();
    *expr = parse_expr(&format!(
        "(SELECT max(_d.description) FROM pg_catalog.pg_description _d \
         WHERE _d.objoid = {} AND _d.objsubid = 0{class_filter})",
        a[0]
    ))?;
    Ok(Flow::Done)
}

/// The classoid PostgreSQL stores in pg_description for comments on each catalog.
fn classoid(catalog: &str) -> Option<i32> {
    Some(match catalog.trim_start_matches("pg_catalog.") {
        "pg_class" => 1259,
        "pg_namespace" => 2615,
        "pg_proc" => 1255,
        "pg_type" => 1247,
        "pg_database" => 1262,
        "pg_constraint" => 2606,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn object_comments_are_looked_up() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT obj_description(c.oid, 'pg_class'), obj_description(d.oid) FROM t"),
            "SELECT (SELECT max(_d.description) FROM pg_catalog.pg_description _d WHERE _d.objoid = c.oid AND _d.objsubid = 0 AND _d.classoid = 1259), (SELECT max(_d.description) FROM pg_catalog.pg_description _d WHERE _d.objoid = d.oid AND _d.objsubid = 0) FROM t"
        );
    }
}
