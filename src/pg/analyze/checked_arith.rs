//! Integer arithmetic that overflows is an error, as in PostgreSQL (22003 `integer out of
//! range`), not a wrapped-around number, and float arithmetic that overflows too (`value out of
//! range: overflow`), not `Infinity`: DataFusion's `+ - *` on integers wrap, so
//! `9223372036854775807::int8 + 1` (or `-x` of the smallest bigint) answered `-9223372036854775808` and a calculated field
//! over large counts could turn negative without a word. Floating-point division by zero is
//! PostgreSQL's 22012 too, not `Infinity`. After type coercion (both operands then have one
//! type), this rule replaces those operators by functions running Arrow's checked kernels.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Datum};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use crate::error::{Error, ErrorKind};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_checked_arith", rewrite: check };

fn check(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    if let Expr::Negative(inner) = &e
        && let Ok(t) = inner.get_type(schema)
        && t.is_signed_integer()
    {
        // `-x` is `0 - x`: the negation of the smallest integer overflows.
        let Expr::Negative(inner) = e else { unreachable!("matched above") };
        let zero = Expr::Literal(ScalarValue::new_zero(&t)?, None);
        let udf = Arc::new(ScalarUDF::new_from_impl(Checked::new(Operator::Minus)));
        return Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![zero, *inner]))));
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else { return Ok(Transformed::no(e)) };
    let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else { return Ok(Transformed::no(e)) };
    if lt != rt {
        return Ok(Transformed::no(e));
    }
    let op = match op {
        Operator::Plus | Operator::Minus | Operator::Multiply if lt.is_signed_integer() || lt.is_floating() => *op,
        Operator::Divide if lt.is_floating() => *op,
        _ => return Ok(Transformed::no(e)),
    };
    let Expr::BinaryExpr(BinaryExpr { left, right, .. }) = e else { unreachable!("matched above") };
    let udf = Arc::new(ScalarUDF::new_from_impl(Checked::new(op)));
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![*left, *right]))))
}

/// `a + b`, `a - b`, `a * b` on integers, `a / b` on floats, failing where PostgreSQL fails.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Checked {
    op: Operator,
    signature: Signature,
}

impl Checked {
    pub fn new(op: Operator) -> Self {
        Checked { op, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Operator::Plus => "checked_add",
            Operator::Minus => "checked_sub",
            Operator::Multiply => "checked_mul",
            _ => "checked_div",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = <[ColumnarValue; 2]>::try_from(args.args)
            .map_err(|_| DataFusionError::Internal(format!("{} takes two arguments", self.name())))?;
        let data_type = l.data_type();
        if self.op == Operator::Divide && has_zero(&r) {
            return Err(super::external(Error::new(ErrorKind::DivisionByZero, "division by zero")));
        }
        let kernel = match self.op {
            Operator::Plus => numeric::add,
            Operator::Minus => numeric::sub,
            Operator::Multiply => numeric::mul,
            _ => numeric::div,
        };
        let out_of_range = |e: ArrowError| match e {
            ArrowError::ArithmeticOverflow(_) => super::external(Error::new(
                ErrorKind::NumericValueOutOfRange,
                format!("{} out of range", crate::error::pg_type_name(&data_type)),
            )),
            other => DataFusionError::from(other),
        };
        // A float result that is infinite where neither operand was: PostgreSQL's 22003.
        let apply = |l: &dyn Datum, r: &dyn Datum| {
            let out = kernel(l, r).map_err(out_of_range)?;
            if data_type.is_floating() && float_overflowed(&out, l, r)? {
                return Err(super::external(Error::new(ErrorKind::NumericValueOutOfRange, "value out of range: overflow")));
            }
            Ok::<_, DataFusionError>(out)
        };
        Ok(match (l, r) {
            (ColumnarValue::Array(l), ColumnarValue::Array(r)) => ColumnarValue::Array(apply(&l, &r)?),
            (ColumnarValue::Scalar(l), ColumnarValue::Array(r)) => ColumnarValue::Array(apply(&l.to_scalar()?, &r)?),
            (ColumnarValue::Array(l), ColumnarValue::Scalar(r)) => ColumnarValue::Array(apply(&l, &r.to_scalar()?)?),
            (ColumnarValue::Scalar(l), ColumnarValue::Scalar(r)) => {
                let one: ArrayRef = apply(&l.to_scalar()?, &r.to_scalar()?)?;
                ColumnarValue::Scalar(ScalarValue::try_from_array(&one, 0)?)
            }
        })
    }
}

/// Whether a float result holds an infinity at a row where both operands are finite.
fn float_overflowed(out: &ArrayRef, l: &dyn Datum, r: &dyn Datum) -> Result<bool> {
    let as_f64 = |a: &dyn Array| -> Result<Vec<Option<f64>>> {
        let a = datafusion::arrow::compute::cast(a, &DataType::Float64)?;
        Ok(a.as_primitive::<Float64Type>().iter().collect())
    };
    // The common case, no infinity at all, without a copy.
    let any_infinite = match out.data_type() {
        DataType::Float64 => out.as_primitive::<Float64Type>().values().iter().any(|v| v.is_infinite()),
        DataType::Float32 => out.as_primitive::<Float32Type>().values().iter().any(|v| v.is_infinite()),
        _ => false,
    };
    if !any_infinite {
        return Ok(false);
    }
    let results = as_f64(out.as_ref())?;
    let (l, l_scalar) = l.get();
    let (r, r_scalar) = r.get();
    let (lv, rv) = (as_f64(l)?, as_f64(r)?);
    let at = |v: &[Option<f64>], scalar: bool, i: usize| if scalar { v[0] } else { v[i] };
    Ok(results.iter().enumerate().any(|(i, v)| {
        v.is_some_and(f64::is_infinite)
            && at(&lv, l_scalar, i).is_some_and(f64::is_finite)
            && at(&rv, r_scalar, i).is_some_and(f64::is_finite)
    }))
}

/// Whether a floating-point divisor holds a zero.
fn has_zero(v: &ColumnarValue) -> bool {
    match v {
        ColumnarValue::Scalar(ScalarValue::Float64(Some(x))) => *x == 0.0,
        ColumnarValue::Scalar(ScalarValue::Float32(Some(x))) => *x == 0.0,
        ColumnarValue::Scalar(_) => false,
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Float64 => a.as_primitive::<Float64Type>().iter().any(|x| x == Some(0.0)),
            DataType::Float32 => a.as_primitive::<Float32Type>().iter().any(|x| x == Some(0.0)),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn integer_overflow_is_22003_not_a_wrapped_number() {
        assert_eq!(answer("SELECT 9223372036854775807::bigint + 1::bigint").await, "[22003] bigint out of range");
        assert_eq!(answer("SELECT 32767::smallint + 1::smallint").await, "[22003] smallint out of range");
        assert_eq!(answer("SELECT 2147483647::int * 2::int").await, "[22003] integer out of range");
        assert_eq!(answer("SELECT (-9223372036854775807)::bigint - 2::bigint").await, "[22003] bigint out of range");
        // Over a column, not only constants.
        assert_eq!(
            answer("SELECT max(x * 2::int) FROM (VALUES (1::int), (2000000000::int)) t(x)").await,
            "[22003] integer out of range"
        );
        assert_eq!(answer("SELECT 2147483647::int + 1::int - 1::int").await, "[22003] integer out of range");
        assert_eq!(answer("SELECT 40000::int * 50000::bigint").await, "2000000000");
        // Negation too.
        assert_eq!(answer("SELECT -a FROM (VALUES (-9223372036854775807 - 1)) AS t(a)").await, "[22003] bigint out of range");
        assert_eq!(answer("SELECT -a FROM (VALUES (-5)) AS t(a)").await, "5");
    }

    #[tokio::test]
    async fn float_overflow_is_22003_not_infinity() {
        assert_eq!(answer("SELECT CAST('1e300' AS DOUBLE) * CAST('1e300' AS DOUBLE)").await, "[22003] value out of range: overflow");
        assert_eq!(answer("SELECT x + x FROM (VALUES (1.0::double), (CAST('1.7e308' AS DOUBLE))) t(x) ORDER BY 1 DESC").await, "[22003] value out of range: overflow");
        // An infinity that was already there is not an overflow.
        assert_eq!(answer("SELECT CAST('Infinity' AS DOUBLE) * 2::double").await, "inf");
        assert_eq!(answer("SELECT 1.5::double * 2::double").await, "3.0");
    }

    #[tokio::test]
    async fn float_division_by_zero_is_22012() {
        assert_eq!(answer("SELECT 1.0::double / 0::double").await, "[22012] division by zero");
        assert_eq!(answer("SELECT 1.0::double / x FROM (VALUES (2.0::double), (0.0::double)) t(x)").await, "[22012] division by zero");
        assert_eq!(answer("SELECT 1.0::double / 4::double").await, "0.25");
    }
}
