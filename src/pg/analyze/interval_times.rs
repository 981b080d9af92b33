//! `interval * number`, `number * interval` and `interval / number`, as PostgreSQL computes
//! them: `INTERVAL '1 day' * 3` is `3 days`, `INTERVAL '1 month' * 1.5` is `1 mon 15 days`.
//! DataFusion refuses them ("Invalid interval arithmetic operation"), and Tableau writes every
//! DATEADD as `x + n * INTERVAL '1 DAY'`, so its date calculations failed. While DataFusion
//! plans SQL (it fails on them there), [`IntervalTimesPlanner`] plans those operators as
//! [`IntervalTimes`], which follows
//! PostgreSQL's `interval_mul`: each field is multiplied, and the fraction of a month carries
//! into days (30 a month) and the fraction of a day into time, rounded to the microsecond.
//! Division by zero is 22012, a result past the interval's fields 22008.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator as SqlOperator;

use crate::error::{Error, ErrorKind};

/// Plans `interval * number`, `number * interval` and `interval / number` as
/// [`IntervalTimes`]: while DataFusion plans SQL, since it fails on them there already.
#[derive(Debug, Default)]
pub struct IntervalTimesPlanner;

impl ExprPlanner for IntervalTimesPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let RawBinaryExpr { op, left, right } = expr;
        let kind = |x: &Expr| match x.get_type(schema) {
            Ok(DataType::Interval(_)) => Some(true),
            Ok(t) if t.is_numeric() => Some(false),
            _ => None,
        };
        let (interval, factor, divide) = match (&op, kind(&left), kind(&right)) {
            (SqlOperator::Multiply, Some(true), Some(false)) => (&left, &right, false),
            (SqlOperator::Multiply, Some(false), Some(true)) => (&right, &left, false),
            (SqlOperator::Divide, Some(true), Some(false)) => (&left, &right, true),
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        let cast = |x: &Expr, t: DataType| Expr::Cast(Cast::new(Box::new(x.clone()), t));
        let args = vec![cast(interval, DataType::Interval(IntervalUnit::MonthDayNano)), cast(factor, DataType::Float64)];
        let udf = Arc::new(ScalarUDF::new_from_impl(IntervalTimes::new(divide)));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(udf, args))))
    }
}

/// An interval times (or divided by) a double, as PostgreSQL's `interval_mul`/`interval_div`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalTimes {
    divide: bool,
    signature: Signature,
}

impl IntervalTimes {
    pub fn new(divide: bool) -> Self {
        let types = vec![DataType::Interval(IntervalUnit::MonthDayNano), DataType::Float64];
        IntervalTimes { divide, signature: Signature::exact(types, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for IntervalTimes {
    fn name(&self) -> &str {
        if self.divide { "interval_div" } else { "interval_mul" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (spans, factors) = (arrays[0].as_primitive::<IntervalMonthDayNanoType>(), arrays[1].as_primitive::<Float64Type>());
        let mut out = Vec::with_capacity(spans.len());
        for (span, factor) in spans.iter().zip(factors.iter()) {
            out.push(match (span, factor) {
                (Some(_), Some(f)) if self.divide && f == 0.0 => {
                    return Err(super::external(Error::new(ErrorKind::DivisionByZero, "division by zero")));
                }
                (Some(span), Some(factor)) => Some(interval_times(span, factor, self.divide)?),
                _ => None,
            });
        }
        let array: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(out));
        crate::pg::functions::result_shape(&args.args, array)
    }
}

const DAYS_PER_MONTH: f64 = 30.0;
const SECS_PER_DAY: f64 = 86_400.0;

/// Rounded to the microsecond, as PostgreSQL's `TSROUND` (`rint`: half to even).
fn ts_round(x: f64) -> f64 {
    (x * 1e6).round_ties_even() / 1e6
}

/// PostgreSQL's `interval_mul`, or with `divide` its `interval_div`, which divides each field
/// rather than multiplying by the inverse (`INTERVAL '49 months' / 49` is `1 mon`)
/// (src/backend/utils/adt/timestamp.c), on nanoseconds.
fn interval_times(span: IntervalMonthDayNano, factor: f64, divide: bool) -> Result<IntervalMonthDayNano> {
    let by = |x: f64| if divide { x / factor } else { x * factor };
    let out_of_range = || super::external(Error::new(ErrorKind::DatetimeOutOfRange, "interval out of range"));
    let field = |x: f64| if x.is_finite() && x.abs() < 2_147_483_648.0 { Ok(x.trunc() as i32) } else { Err(out_of_range()) };
    let month_product = by(f64::from(span.months));
    let months = field(month_product)?;
    let day_product = by(f64::from(span.days));
    let mut days = field(day_product)?;
    let month_remainder_days = ts_round((month_product - f64::from(months)) * DAYS_PER_MONTH);
    let mut sec_remainder =
        ts_round((day_product - f64::from(days) + month_remainder_days - month_remainder_days.trunc()) * SECS_PER_DAY);
    if sec_remainder.abs() >= SECS_PER_DAY {
        let whole = (sec_remainder / SECS_PER_DAY).trunc();
        days = days.checked_add(field(whole)?).ok_or_else(out_of_range)?;
        sec_remainder -= whole * SECS_PER_DAY;
    }
    days = days.checked_add(field(month_remainder_days)?).ok_or_else(out_of_range)?;
    // PostgreSQL keeps microseconds: the time is rounded to one.
    let micros = (by(span.nanoseconds as f64 / 1e3) + sec_remainder * 1e6).round_ties_even();
    if !micros.is_finite() || micros.abs() >= i64::MAX as f64 / 1e3 {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(months, days, micros as i64 * 1000))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn interval_times_a_number() {
        assert_eq!(answer("SELECT INTERVAL '1 day' * 3").await, "3 days");
        assert_eq!(answer("SELECT 2 * INTERVAL '1 hour 30 minutes'").await, "3 hours");
        assert_eq!(answer("SELECT INTERVAL '1 month' * 1.5").await, "1 mons 15 days");
        assert_eq!(answer("SELECT INTERVAL '1 day' * 0.5").await, "12 hours");
        assert_eq!(answer("SELECT INTERVAL '3 days' / 2").await, "1 days 12 hours");
        assert_eq!(answer("SELECT INTERVAL '1 day' / 0").await, "[22012] division by zero");
        // Each field divided, not multiplied by an inexact inverse.
        assert_eq!(answer("SELECT INTERVAL '49 months' / 49").await, "1 mons");
        assert_eq!(answer("SELECT INTERVAL '98 days' / 98").await, "1 days");
        // Over a column, as Tableau's DATEADD writes it.
        assert_eq!(
            answer("SELECT max(TIMESTAMP '2025-03-01 00:00:00' + n * INTERVAL '1 DAY') FROM (VALUES (1), (2), (NULL)) t(n)").await,
            "2025-03-03T00:00:00"
        );
        assert_eq!(answer("SELECT INTERVAL '1 day' * 1e12").await, "[22008] interval out of range");
    }
}
