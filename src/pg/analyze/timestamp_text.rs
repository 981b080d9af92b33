//! A timestamp cast to text reads as PostgreSQL writes it, not in Arrow's ISO form:
//! `ts::text` is `2025-03-05 14:07:09` (Arrow: `2025-03-05T14:07:09`), fractional seconds
//! only when there are some and without trailing zeros (`…09.5`, Arrow: `…09.500`), `+00` after a
//! `timestamptz` (sessions are UTC). A BI tool's label (`'Week of ' || ts`), a CSV export
//! of `CAST(ts AS VARCHAR)` or a comparison of texts got Arrow's form.
//!
//! After type coercion (which also casts a timestamp concatenated with text), this rule
//! rewrites `CAST(x AS text type)` of a timestamp into [`TimestampText`]`(x)`, cast to the
//! text type asked for.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_timestamp_text", rewrite: as_text };

fn as_text(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr, field }) = &e else { return Ok(Transformed::no(e)) };
    if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return Ok(Transformed::no(e));
    }
    if !matches!(expr.get_type(schema), Ok(DataType::Timestamp(..))) {
        return Ok(Transformed::no(e));
    }
    let udf = Arc::new(ScalarUDF::new_from_impl(TimestampText::default()));
    let text = Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![expr.as_ref().clone()]));
    Ok(Transformed::yes(match field.data_type() {
        DataType::Utf8 => text,
        _ => Expr::Cast(Cast::new_from_field(Box::new(text), Arc::clone(field))),
    }))
}

/// PostgreSQL's text form of a timestamp given in µs since 1970: `YYYY-MM-DD HH:MM:SS`, the
/// fraction only when non-zero and trimmed, `+00` when it has a time zone (sessions are UTC).
/// `None` beyond chrono's range.
pub fn timestamp_text(us: i64, tz: bool) -> Option<String> {
    let dt = chrono::DateTime::from_timestamp_micros(us)?;
    let mut text = dt.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = us.rem_euclid(1_000_000);
    if micros != 0 {
        text.push_str(format!(".{micros:06}").trim_end_matches('0'));
    }
    if tz {
        text.push_str("+00");
    }
    Some(text)
}

/// `pg_timestamp_text(ts)`: a timestamp of any unit and zone as PostgreSQL's text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampText {
    signature: Signature,
}

impl Default for TimestampText {
    fn default() -> Self {
        TimestampText { signature: Signature::new(TypeSignature::Any(1), Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for TimestampText {
    fn name(&self) -> &str {
        "pg_timestamp_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x] = datafusion::common::utils::take_function_args(self.name(), args.args)?;
        let scalar = matches!(x, ColumnarValue::Scalar(_));
        let array = x.into_array(1)?;
        let DataType::Timestamp(_, tz) = array.data_type() else {
            return exec_err!("pg_timestamp_text of {}", array.data_type());
        };
        let tz = tz.clone();
        // PostgreSQL keeps microseconds: nanoseconds are cut, as its input does.
        let micros = cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 26);
        for v in micros.iter() {
            match v {
                None => out.append_null(),
                Some(us) => match timestamp_text(us, tz.is_some()) {
                    Some(text) => out.append_value(text),
                    None => {
                        let e = crate::error::Error::new(crate::error::ErrorKind::DatetimeOutOfRange, "timestamp out of range");
                        return Err(super::external(e));
                    }
                },
            }
        }
        let out: Arc<dyn Array> = Arc::new(out.finish());
        crate::pg::functions::scalar_if(scalar, out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn timestamps_read_as_postgresql_writes_them() {
        assert_eq!(answer("SELECT CAST(TIMESTAMP '2025-03-05 14:07:09' AS TEXT)").await, "2025-03-05 14:07:09");
        assert_eq!(answer("SELECT CAST(TIMESTAMP '2025-03-05 14:07:09.5' AS VARCHAR)").await, "2025-03-05 14:07:09.5");
        assert_eq!(answer("SELECT CAST(TIMESTAMP '2025-03-05 00:00:00.000120' AS TEXT)").await, "2025-03-05 00:00:00.00012");
        // With a time zone (sessions are UTC).
        assert_eq!(
            answer("SELECT CAST(arrow_cast(TIMESTAMP '2025-03-05 14:07:09', 'Timestamp(Microsecond, Some(\"UTC\"))') AS TEXT)").await,
            "2025-03-05 14:07:09+00"
        );
        // Concatenated with text (type coercion casts it), and over a column with a NULL.
        assert_eq!(answer("SELECT 'at ' || TIMESTAMP '2025-03-05 14:07:09'").await, "at 2025-03-05 14:07:09");
        assert_eq!(
            answer("SELECT string_agg(CAST(t AS TEXT), ',') FROM (VALUES (TIMESTAMP '2025-01-01 10:00:00'), (NULL), (TIMESTAMP '1999-12-31 23:59:59.25')) AS v(t)").await,
            "2025-01-01 10:00:00,1999-12-31 23:59:59.25"
        );
    }
}
