//! `floor`, `ceil` and `trunc` of a `numeric` have PostgreSQL's scale: `floor(-1.5)` is `-2`,
//! not `-2.0`, and `trunc(3.789, 1)` is `3.7`, not `3.700`. DataFusion's keep their
//! argument's type, so the value is right but prints with the argument's decimals, and a
//! client reading the column's scale (a BI tool formatting a "whole units" field) shows
//! decimals that are not there.
//!
//! After type coercion, this rule casts the result of
//! - `floor(x)`, `ceil(x)` (and `ceiling(x)`, its other name), `trunc(x)` of a `numeric(p, s)` with `s > 0` to
//!   `numeric(p - s + 1, 0)` (one more digit: `floor(-9.5)` is `-10`);
//! - `trunc(x, n)` with a constant `n` to `numeric(…, max(n, 0))`, as PostgreSQL's scale is `n`.
//!
//! The cast is exact: the value is already whole, or already cut to `n` decimals. `round`
//! needs nothing: DataFusion's already gives `round(x, n)` scale `n`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{Expr, ExprSchemable};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_numeric_scale", rewrite: rescale };

fn rescale(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else { return Ok(Transformed::no(e)) };
    if !matches!(func.name(), "floor" | "ceil" | "trunc") {
        return Ok(Transformed::no(e));
    }
    let Some(Ok(DataType::Decimal128(p, s))) = args.first().map(|a| a.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    let digits = match args.get(1) {
        None => 0,
        Some(Expr::Literal(n, _)) if func.name() == "trunc" => match integer(n) {
            Some(n) => n.clamp(0, 38) as i16,
            None => return Ok(Transformed::no(e)),
        },
        Some(_) => return Ok(Transformed::no(e)),
    };
    let (p, s) = (i16::from(p), i16::from(s));
    if digits == s {
        return Ok(Transformed::no(e));
    }
    // The integer digits stay (one more for floor and ceil), the decimals are `digits`, as
    // many as fit beside them.
    let integer_digits = p - s + 1;
    let scale = digits.min(38 - integer_digits).max(0);
    let precision = (integer_digits + scale).clamp(1, 38) as u8;
    let scale = scale as i8;
    // floor and ceil may need that digit themselves (DataFusion checks their result against
    // the argument's precision): their argument gets it.
    let Expr::ScalarFunction(ScalarFunction { func, mut args }) = e else { unreachable!("matched above") };
    if func.name() != "trunc" && p < 38 {
        let wider = DataType::Decimal128((p + 1) as u8, s as i8);
        args[0] = Expr::Cast(Cast::new(Box::new(args[0].clone()), wider));
    }
    let call = Expr::ScalarFunction(ScalarFunction { func, args });
    Ok(Transformed::yes(Expr::Cast(Cast::new(Box::new(call), DataType::Decimal128(precision, scale)))))
}

/// A constant integer argument's value.
fn integer(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int16(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int32(Some(n)) => Some(i64::from(*n)),
        ScalarValue::Int64(Some(n)) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn whole_numbers_have_scale_zero() {
        assert_eq!(answer("SELECT floor(CAST(-1.5 AS numeric(2,1)))").await, "-2");
        assert_eq!(answer("SELECT ceil(CAST(-1.5 AS numeric(2,1)))").await, "-1");
        assert_eq!(answer("SELECT ceil(CAST(1.25 AS numeric(3,2)))").await, "2");
        assert_eq!(answer("SELECT trunc(CAST(-3.75 AS numeric(3,2)))").await, "-3");
        // One more digit than the argument's integer part.
        assert_eq!(answer("SELECT floor(CAST(-9.5 AS numeric(2,1)))").await, "-10");
        assert_eq!(answer("SELECT ceil(CAST(9.5 AS numeric(2,1)))").await, "10");
        // Over a column.
        assert_eq!(
            answer("SELECT CAST(sum(floor(x)) AS text) FROM (VALUES (CAST(1.5 AS numeric(3,1))), (CAST(2.5 AS numeric(3,1)))) t(x)").await,
            "3"
        );
    }

    #[tokio::test]
    async fn trunc_to_n_digits_has_scale_n() {
        assert_eq!(answer("SELECT trunc(CAST(3.789 AS numeric(4,3)), 1)").await, "3.7");
        assert_eq!(answer("SELECT trunc(CAST(3.78 AS numeric(3,2)), 4)").await, "3.7800");
        assert_eq!(answer("SELECT trunc(CAST(1234.5 AS numeric(5,1)), -2)").await, "1200");
        // More decimals than fit beside the integer digits: as many as fit.
        assert_eq!(answer("SELECT trunc(CAST(12345678.5 AS numeric(10,2)), 31)").await, "12345678.50000000000000000000000000000");
        // Floats and integers are left alone.
        assert_eq!(answer("SELECT floor(-1.5::double)").await, "-2.0");
        assert_eq!(answer("SELECT trunc(3.789::double, 1)").await, "3.7");
    }
}
