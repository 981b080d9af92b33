//! `a[i]` on names: DataFusion cannot index the catalogs' vector columns (`indkey[0]`, psql's
//! and pgjdbc's index queries), which the static catalog holds as text ("1 2"), so every
//! subscript of a name reads through `pg_subscript()`, which takes those and lists alike
//! (Grafana's `s[i]` over `string_to_array`).

use datafusion::sql::sqlparser::ast::{AccessExpr, Expr, Subscript};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "vector_subscript", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::CompoundFieldAccess { root, access_chain } = expr
        && let Some((AccessExpr::Subscript(Subscript::Index { index }), path)) = access_chain.split_last()
        && path.iter().all(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
    {
        let mut base = root.to_string();
        for a in path {
            base.push_str(&a.to_string());
        }
        *expr = parse_expr(&format!("pg_subscript({base}, {index})"))?;
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn subscripts_read_through_pg_subscript() {
        assert_eq!(rewritten_by(&super::RULE, "SELECT indkey[0], s[i] FROM pg_index"), "SELECT pg_subscript(indkey, 0), pg_subscript(s, i) FROM pg_index");
    }
}
