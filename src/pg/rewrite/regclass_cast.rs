//! `CAST(<text expression> AS regclass)`: a relation named by a computed string, as
//! Metabase's field sync writes `format('%I.%I', schema, table)::regclass::oid`.
//! datafusion-pg-catalog resolves only literal names; a function call or `||` concatenation
//! is looked up by `regclass_oid()` (a column operand stays the oid → regclass display cast).
//! The concatenation comes in parentheses (`(s || '.' || t)::regclass`: without them only
//! the last operand would be cast), so parentheses are looked through.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "regclass_cast", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::Cast { expr: inner, data_type, .. } = expr
        && data_type.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.") == "regclass"
        && matches!(unnested(inner), Expr::Function(_) | Expr::BinaryOp { op: BinaryOperator::StringConcat, .. })
    {
        *expr = parse_expr(&format!("regclass_oid({inner})"))?;
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

/// `e` without its parentheses: a concatenation is cast as `(a || b)::regclass`.
fn unnested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => unnested(inner),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn computed_names_are_looked_up() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT format('%I.%I', s, t)::regclass::oid, (s || '.' || t)::regclass, c::regclass FROM x"),
            "SELECT regclass_oid(format('%I.%I', s, t))::oid, regclass_oid((s || '.' || t)), c::REGCLASS FROM x"
        );
    }
}
