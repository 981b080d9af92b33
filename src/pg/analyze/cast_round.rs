//! A cast of a fractional number to an integer type rounds, as PostgreSQL's does, instead of
//! truncating as Arrow's cast does: `3.7::int` is 4, not 3, and a BI tool's calculated field
//! `CAST(revenue / footfall AS integer)` answered one less than PostgreSQL for every value
//! with a fraction of a half or more. PostgreSQL rounds `numeric` half away from zero
//! (`2.5::numeric::int` is 3, `-2.5` is -3) and `real`/`double precision` half to even, as
//! `rint` does (`12.5::float8::int` is 12, `13.5` is 14).
//!
//! After type coercion (every operand then has its type), this rule rewrites
//! `CAST(x AS integer type)`:
//! - of a `numeric(p, s)` with `s > 0` into a cast through `numeric(p - s + 1, 0)`, which
//!   Arrow rounds half away from zero;
//! - of a float into a cast of [`RoundHalfEven`]`(x)`.
//!
//! What is out of range for the target type stays an error (22003), as before.
//!
//! `round(x)` of a float is left as DataFusion's (half away from zero), though PostgreSQL's
//! float8 `round` rounds half to even: DataFusion's `avg` of integers is float8 where
//! PostgreSQL's is numeric (half away from zero), and `round(avg(n))` must keep giving
//! PostgreSQL's answer.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_cast_round", rewrite: round };

fn round(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr, field }) = &e else { return Ok(Transformed::no(e)) };
    if !field.data_type().is_integer() {
        return Ok(Transformed::no(e));
    }
    let rounded = match expr.get_type(schema) {
        Ok(DataType::Decimal128(p, s)) if s > 0 => {
            let precision = (i16::from(p) - i16::from(s) + 1).clamp(1, 38) as u8;
            Expr::Cast(Cast::new(expr.clone(), DataType::Decimal128(precision, 0)))
        }
        Ok(DataType::Float64 | DataType::Float32) => {
            let udf = Arc::new(ScalarUDF::new_from_impl(RoundHalfEven::default()));
            Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![expr.as_ref().clone()]))
        }
        _ => return Ok(Transformed::no(e)),
    };
    Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(Box::new(rounded), Arc::clone(field)))))
}

/// A float rounded to the nearest whole number, half to even (C's `rint`), of the same type.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RoundHalfEven {
    signature: Signature,
}

impl Default for RoundHalfEven {
    fn default() -> Self {
        RoundHalfEven {
            signature: Signature::uniform(1, vec![DataType::Float64, DataType::Float32], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RoundHalfEven {
    fn name(&self) -> &str {
        "rint"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x] = datafusion::common::utils::take_function_args(self.name(), args.args)?;
        Ok(match x {
            ColumnarValue::Scalar(ScalarValue::Float64(v)) => {
                ColumnarValue::Scalar(ScalarValue::Float64(v.map(f64::round_ties_even)))
            }
            ColumnarValue::Scalar(ScalarValue::Float32(v)) => {
                ColumnarValue::Scalar(ScalarValue::Float32(v.map(f32::round_ties_even)))
            }
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Float64 => ColumnarValue::Array(Arc::new(
                    a.as_primitive::<Float64Type>().unary::<_, Float64Type>(f64::round_ties_even),
                )),
                DataType::Float32 => ColumnarValue::Array(Arc::new(
                    a.as_primitive::<Float32Type>().unary::<_, Float32Type>(f32::round_ties_even),
                )),
                other => return exec_err!("rint of {other}"),
            },
            other => return exec_err!("rint of {}", other.data_type()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn numeric_rounds_half_away_from_zero() {
        assert_eq!(answer("SELECT CAST(CAST(3.7 AS numeric(4,1)) AS int)").await, "4");
        assert_eq!(answer("SELECT CAST(CAST(-3.7 AS numeric(4,1)) AS int)").await, "-4");
        assert_eq!(answer("SELECT CAST(CAST(2.5 AS numeric(3,1)) AS bigint)").await, "3");
        assert_eq!(answer("SELECT CAST(CAST(-2.5 AS numeric(3,1)) AS smallint)").await, "-3");
        assert_eq!(answer("SELECT CAST(CAST(2.49 AS numeric(3,2)) AS int)").await, "2");
        // Over a column, and the widest precision.
        assert_eq!(
            answer("SELECT string_agg(CAST(CAST(x AS int) AS text), ',') FROM (VALUES (CAST(0.5 AS numeric(38,37))), (CAST(-0.49 AS numeric(38,37)))) t(x)").await,
            "1,0"
        );
    }

    #[tokio::test]
    async fn floats_round_half_to_even() {
        assert_eq!(answer("SELECT CAST(12.5::double AS int)").await, "12");
        assert_eq!(answer("SELECT CAST(13.5::double AS int)").await, "14");
        assert_eq!(answer("SELECT CAST(-13.5::double AS bigint)").await, "-14");
        assert_eq!(answer("SELECT CAST(3.7::real AS int)").await, "4");
        assert_eq!(
            answer("SELECT string_agg(CAST(CAST(x AS int) AS text), ',') FROM (VALUES (0.5::double), (1.5::double), (-0.7::double), (NULL)) t(x)").await,
            "0,2,-1"
        );
        // Out of range stays an error.
        assert_eq!(answer("SELECT CAST(1e20::double AS int)").await.get(..7), Some("[22003]"));
    }

    #[tokio::test]
    async fn other_casts_are_left_alone() {
        assert_eq!(answer("SELECT CAST(CAST(7 AS numeric(3,0)) AS int)").await, "7");
        assert_eq!(answer("SELECT CAST('42' AS int)").await, "42");
        assert_eq!(answer("SELECT CAST(3.7::double AS text)").await, "3.7");
    }
}
