//! pg_type's regproc columns (`typinput`, `typreceive`, …) hold the functions' names in the
//! static catalog; compared with anything but a name they are looked up as oids (Npgsql's
//! type loading joins `proc.oid = typ.typreceive`). Only the operand changes: later rules
//! still look at the comparison.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};

use super::{Context, Flow, Rule, is_column_of, parse_expr, string_literal};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "regproc_compare", calls: &[], apply };

const REGPROC_COLUMNS: &[&str] = &["typinput", "typoutput", "typreceive", "typsend", "typmodin", "typmodout", "typanalyze"];

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right } = expr {
        if is_column_of(left, REGPROC_COLUMNS) && string_literal(right).is_none() {
            **left = parse_expr(&format!("regproc_oid({left})"))?;
        } else if is_column_of(right, REGPROC_COLUMNS) && string_literal(left).is_none() {
            **right = parse_expr(&format!("regproc_oid({right})"))?;
        }
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn regprocs_compared_with_oids_are_looked_up() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT 1 FROM pg_type t JOIN pg_proc p ON p.oid = t.typreceive WHERE t.typinput = 'array_in' AND typsend <> p.oid"),
            "SELECT 1 FROM pg_type t JOIN pg_proc p ON p.oid = regproc_oid(t.typreceive) WHERE t.typinput = 'array_in' AND regproc_oid(typsend) <> p.oid"
        );
    }
}
