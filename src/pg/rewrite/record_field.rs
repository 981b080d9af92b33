//! `(record).field` on an expression (pgjdbc's `(result.KEYS).x`): DataFusion only takes
//! dots after names, so it becomes `get_field()`.

use datafusion::sql::sqlparser::ast::{AccessExpr, Expr};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;
use crate::pg::names::ident_name;

pub const RULE: Rule = Rule { name: "record_field", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::CompoundFieldAccess { root, access_chain } = expr
        && !access_chain.is_empty()
        && access_chain.iter().all(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_))))
    {
        let mut out = root.to_string();
        for a in access_chain.iter() {
            if let AccessExpr::Dot(Expr::Identifier(f)) = a {
                out = format!("get_field({out}, '{}')", ident_name(f).replace('\'', "''"));
            }
        }
        *expr = parse_expr(&out)?;
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn fields_of_expressions_read_through_get_field() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT (information_schema._pg_expandarray(i.indkey)).n, (r.KEYS).x FROM t"),
            "SELECT get_field((information_schema._pg_expandarray(i.indkey)), 'n'), get_field((r.KEYS), 'x') FROM t"
        );
    }
}
