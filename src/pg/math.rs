//! PostgreSQL's numeric functions that DataFusion lacks or answers otherwise:
//! - `div(a, b)`, the integer quotient of two numerics truncated towards zero (`div(-7, 2)`
//!   is `-3`), a numeric of scale 0;
//! - `ln`, `log` and `log10` of zero or of a negative number are errors (2201E), as in
//!   PostgreSQL, not `-Infinity` or `NaN` (DataFusion's, wrapped).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Decimal128Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use super::analyze::external;
use crate::error::{Error, ErrorKind};

/// Registers `div`, and `ln`, `log`, `log10` checked.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::from(Div { signature: Signature::user_defined(Volatility::Immutable) }));
    for name in ["ln", "log", "log10"] {
        if let Some(inner) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(ScalarUDF::from(CheckedLog { inner }));
        }
    }
}

/// A logarithm whose argument (its last) must be positive.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedLog {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for CheckedLog {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(types)
    }
    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(types)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(value) = args.args.last() {
            let values = cast(&value.to_array(1)?, &DataType::Float64)?;
            let values = values.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            let bad = values.iter().flatten().find(|v| *v <= 0.0);
            if let Some(v) = bad {
                let what = if v == 0.0 { "zero" } else { "a negative number" };
                return Err(external(Error::new(ErrorKind::InvalidArgumentForLogarithm, format!("cannot take logarithm of {what}"))));
            }
        }
        self.inner.invoke_with_args(args)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Div {
    signature: Signature,
}

/// The scale an argument has as a numeric: integers 0, floats 16 (PostgreSQL's float to
/// numeric keeps 15 significant digits).
fn scale_of(t: &DataType) -> Option<i8> {
    match t {
        t if t.is_integer() => Some(0),
        DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(*s),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(16),
        DataType::Null => Some(0),
        _ => None,
    }
}

impl ScalarUDFImpl for Div {
    fn name(&self) -> &str {
        "div"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let scales: Option<Vec<i8>> = types.iter().map(scale_of).collect();
        match (types.len(), scales) {
            // Both to one scale, so that the quotient of the unscaled values is the answer.
            (2, Some(s)) => {
                let scale = s.into_iter().max().unwrap_or(0).max(0);
                Ok(vec![DataType::Decimal128(38, scale); 2])
            }
            _ => Err(external(
                Error::new(ErrorKind::UndefinedFunction, format!("function div({}) does not exist", types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")))
                    .with_hint("div takes two numbers: div(7, 2) is 3."),
            )),
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(38, 0))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = super::functions::result_rows(&args);
        let a = args.args[0].to_array(n)?;
        let b = cast(&args.args[1].to_array(n)?, a.data_type())?;
        let (a, b) = (a.as_primitive::<Decimal128Type>(), b.as_primitive::<Decimal128Type>());
        let mut out = Decimal128Builder::with_capacity(n);
        for r in 0..n {
            if a.is_null(r) || b.is_null(r) {
                out.append_null();
            } else if b.value(r) == 0 {
                return Err(external(Error::new(ErrorKind::DivisionByZero, "division by zero")));
            } else {
                // i128 division truncates towards zero, as div does.
                let q = a.value(r).checked_div(b.value(r));
                out.append_value(q.ok_or_else(|| external(Error::new(ErrorKind::NumericValueOutOfRange, "numeric field overflow")))?);
            }
        }
        let out: Arc<dyn Array> = Arc::new(out.finish().with_precision_and_scale(38, 0)?);
        super::functions::result_shape(&args.args, out)
    }
}

#[cfg(test)]
mod tests {
    use crate::pg::analyze::test::answer;

    /// The answer, or only the SQLSTATE of an error.
    async fn run(sql: &str) -> String {
        let a = answer(sql).await;
        match a.strip_prefix('[') {
            Some(rest) => rest[..5].to_string(),
            None => a,
        }
    }

    #[tokio::test]
    async fn div_truncates_towards_zero() {
        // As PostgreSQL 15: 3, -3, 3, 19, division by zero.
        assert_eq!(run("SELECT div(7, 2)").await, "3");
        assert_eq!(run("SELECT div(-7, 2)").await, "-3");
        assert_eq!(run("SELECT div(7.5, 2)").await, "3");
        assert_eq!(run("SELECT div(9.99, 0.5)").await, "19");
        assert_eq!(run("SELECT div(1, 0)").await, "22012");
        assert_eq!(run("SELECT div(a, b) FROM (VALUES (10, 3), (-9, 4)) AS t(a, b) ORDER BY a LIMIT 1").await, "-2");
        assert_eq!(run("SELECT div('x', 2)").await, "42883");
    }

    #[tokio::test]
    async fn logarithms_of_zero_and_negatives_are_errors() {
        assert_eq!(run("SELECT ln(0)").await, "2201E");
        assert_eq!(run("SELECT log10(x) FROM (VALUES (10.0), (-1.0)) AS t(x)").await, "2201E");
        assert_eq!(run("SELECT log(2.0, 0)").await, "2201E");
        assert_eq!(run("SELECT round(ln(1), 3)").await, "0.0");
    }

    #[tokio::test]
    async fn age_over_the_wire_types() {
        assert_eq!(run("SELECT age(TIMESTAMP '2025-03-01 00:00:00', TIMESTAMP '2024-01-15 00:00:00')").await, "13 mons 17 days");
        assert_eq!(run("SELECT age(DATE '2025-03-01', DATE '2024-02-29')").await, "12 mons 1 days");
        assert_eq!(run("SELECT age(NULL, TIMESTAMP '2024-01-15 00:00:00')").await, "");
    }
}
