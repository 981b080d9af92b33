//! A boolean in `concat`, `concat_ws` and `format` reads `t` or `f`, as PostgreSQL writes a
//! boolean's output form (`concat('x', true)` is `xt`), where Arrow's cast to text gives
//! `true`. (A cast `true::text` and `'x' || true` give `true` in PostgreSQL too, and stay.)
//!
//! Before type coercion (which casts these functions' arguments to text, a boolean to `true`),
//! each boolean argument becomes `CASE WHEN b THEN 't' WHEN NOT b THEN 'f' END`, NULL staying NULL.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Case, ScalarFunction};
use datafusion::logical_expr::{Expr, ExprSchemable};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_concat_bool", rewrite };

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else { return Ok(Transformed::no(e)) };
    // concat_ws's separator and format's template are text; only the values are written.
    let first_value = match func.name() {
        "concat" => 0,
        "concat_ws" | "format" => 1,
        _ => return Ok(Transformed::no(e)),
    };
    let boolean = |a: &Expr| a.get_type(schema).is_ok_and(|t| t == DataType::Boolean);
    let value = |a: &Expr| boolean(a).then(|| a.clone());
    if !args.iter().skip(first_value).any(|a| value(a).is_some()) {
        return Ok(Transformed::no(e));
    }
    let text = |s: &str| Expr::Literal(ScalarValue::Utf8(Some(s.to_string())), None);
    let args = args
        .iter()
        .enumerate()
        .map(|(i, a)| match value(a) {
            Some(b) if i >= first_value => Expr::Case(Case {
                expr: None,
                when_then_expr: vec![
                    (Box::new(b.clone()), Box::new(text("t"))),
                    (Box::new(Expr::Not(Box::new(b))), Box::new(text("f"))),
                ],
                else_expr: None,
            }),
            _ => a.clone(),
        })
        .collect();
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction { func: func.clone(), args })))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn booleans_are_written_t_and_f() {
        assert_eq!(answer("SELECT concat('x', true, 2.50)").await, "xt2.50");
        assert_eq!(answer("SELECT concat_ws(',', true, false, CAST(NULL AS BOOLEAN))").await, "t,f");
        assert_eq!(answer("SELECT concat('x', b) FROM (VALUES (false)) AS t(b)").await, "xf");
        // A cast to text stays PostgreSQL's `true`, inside concat too.
        assert_eq!(answer("SELECT CAST(true AS TEXT)").await, "true");
        assert_eq!(answer("SELECT concat('x', CAST(true AS TEXT))").await, "xtrue");
    }
}
