//! `EXTRACT(second FROM ts)` keeps the fraction of the second, as PostgreSQL's does
//! (`10:30:15.5` gives `15.500000`, numeric with six decimals). DataFusion's `date_part`
//! gives seconds as a whole number (`15`), so a BI tool's "seconds" of an event time lost
//! what it had below the second without a word. Before type coercion (so that what stands
//! over it is coerced to its new type), this rule reads the
//! second from DataFusion's `microsecond` part (the second's microseconds, `15500000`) as
//! `numeric(8,6)`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_extract_second", rewrite: fraction };

/// PostgreSQL's names of the part.
const SECOND: [&str; 5] = ["second", "seconds", "sec", "secs", "s"];

fn fraction(e: Expr, _: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else { return Ok(Transformed::no(e)) };
    let is_second = func.name() == "date_part"
        && args.len() == 2
        && matches!(&args[0], Expr::Literal(ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)), _)
            if SECOND.contains(&p.to_ascii_lowercase().as_str()));
    if !is_second {
        return Ok(Transformed::no(e));
    }
    let micros = Expr::ScalarFunction(ScalarFunction::new_udf(
        func.clone(),
        vec![Expr::Literal(ScalarValue::Utf8(Some("microsecond".into())), None), args[1].clone()],
    ));
    // At most 61 999 999 microseconds: exact as a double, and exactly rounded back to six decimals.
    let seconds = Expr::BinaryExpr(BinaryExpr::new(
        Box::new(Expr::Cast(Cast::new(Box::new(micros), DataType::Float64))),
        Operator::Divide,
        Box::new(Expr::Literal(ScalarValue::Float64(Some(1_000_000.0)), None)),
    ));
    Ok(Transformed::yes(Expr::Cast(Cast::new(Box::new(seconds), DataType::Decimal128(8, 6)))))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn the_second_keeps_its_fraction() {
        assert_eq!(answer("SELECT EXTRACT(second FROM TIMESTAMP '2025-03-15 10:30:15.5')").await, "15.500000");
        assert_eq!(answer("SELECT date_part('seconds', TIMESTAMP '2025-03-15 10:30:15.123456')").await, "15.123456");
        assert_eq!(answer("SELECT EXTRACT(SECOND FROM TIMESTAMP '2025-03-15 10:30:59')").await, "59.000000");
        // Other parts are left alone.
        assert_eq!(answer("SELECT EXTRACT(minute FROM TIMESTAMP '2025-03-15 10:30:15.5')").await, "30");
        assert_eq!(
            answer("SELECT max(EXTRACT(second FROM t)) FROM (VALUES (TIMESTAMP '2025-01-01 00:00:01.25'), (NULL)) AS v(t)").await,
            "1.250000"
        );
    }
}
