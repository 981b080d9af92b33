//! PostgreSQL's calendar arithmetic that DataFusion lacks: `age(timestamp, timestamp)` and
//! `age(timestamp)` (from midnight today), PostgreSQL's `timestamp_age`: the difference in
//! years, months and days as a calendar reads it (`age('2025-03-01', '2024-01-15')` is
//! `1 year 1 mon 17 days`), not a count of days.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampMicrosecondType};
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Registers `age`.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::from(Age { signature: Signature::user_defined(Volatility::Stable) }));
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    match (NaiveDate::from_ymd_opt(ny, nm, 1), NaiveDate::from_ymd_opt(year, month, 1)) {
        (Some(next), Some(first)) => next.signed_duration_since(first).num_days(),
        _ => 30,
    }
}

/// PostgreSQL's `timestamp_age(a, b)`: field-by-field differences, borrowed upwards from
/// the month of `b` (of `a` when `a` is earlier), as months, days and time.
pub fn age(a: NaiveDateTime, b: NaiveDateTime) -> IntervalMonthDayNano {
    let negative = a < b;
    let sign = if negative { -1 } else { 1 };
    let field = |f: fn(&NaiveDateTime) -> i64| sign * (f(&a) - f(&b));
    let mut year = field(|t| t.year() as i64);
    let mut month = field(|t| t.month() as i64);
    // Microseconds, seconds, minutes, hours, days: each borrows from the next.
    let mut small = [
        field(|t| (t.nanosecond() % 1_000_000_000 / 1000) as i64),
        field(|t| t.second() as i64),
        field(|t| t.minute() as i64),
        field(|t| t.hour() as i64),
        field(|t| t.day() as i64),
    ];
    for (i, unit) in [1_000_000, 60, 60, 24].into_iter().enumerate() {
        if small[i] < 0 {
            small[i] += unit;
            small[i + 1] -= 1;
        }
    }
    let [fsec, sec, min, hour, mut day] = small;
    let borrow_from = if negative { a } else { b };
    while day < 0 {
        day += days_in_month(borrow_from.year(), borrow_from.month());
        month -= 1;
    }
    if month < 0 {
        month += 12;
        year -= 1;
    }
    let months = sign * (year * 12 + month);
    let nanos = sign * ((((hour * 60 + min) * 60 + sec) * 1_000_000 + fsec) * 1000);
    IntervalMonthDayNano::new(months as i32, (sign * day) as i32, nanos)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Age {
    signature: Signature,
}

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        if types.is_empty() || types.len() > 2 {
            return exec_err!("age takes one or two timestamps: age(later, earlier), or age(earlier) from today's midnight");
        }
        types
            .iter()
            .map(|t| match t {
                DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Null
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View => Ok(DataType::Timestamp(TimeUnit::Microsecond, None)),
                other => Err(super::analyze::external(
                    crate::error::Error::new(crate::error::ErrorKind::UndefinedFunction, format!("function age({other}) does not exist"))
                        .with_hint("age takes timestamps or dates."),
                )),
            })
            .collect()
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = super::functions::result_rows(&args);
        let micros_type = DataType::Timestamp(TimeUnit::Microsecond, None);
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| Ok(cast(&a.to_array(n)?, &micros_type)?)).collect::<Result<_>>()?;
        // age(t) is age(midnight today, t), today in UTC (the session's zone).
        let today = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight");
        let at = |a: &ArrayRef, r: usize| -> Result<Option<NaiveDateTime>> {
            let a = a.as_primitive::<TimestampMicrosecondType>();
            if a.is_null(r) {
                return Ok(None);
            }
            match chrono::DateTime::from_timestamp_micros(a.value(r)) {
                Some(t) => Ok(Some(t.naive_utc())),
                None => exec_err!("timestamp out of range"),
            }
        };
        let mut out = IntervalMonthDayNanoBuilder::with_capacity(n);
        for r in 0..n {
            let (later, earlier) = match arrays.as_slice() {
                [one] => (Some(today), at(one, r)?),
                [a, b] => (at(a, r)?, at(b, r)?),
                _ => unreachable!("one or two arguments, checked by coerce_types"),
            };
            out.append_option(later.zip(earlier).map(|(a, b)| age(a, b)));
        }
        let out: ArrayRef = Arc::new(out.finish());
        super::functions::result_shape(&args.args, out)
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    fn t(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("test time")
    }

    #[test]
    fn ages_as_postgresql_counts_them() {
        // Each as PostgreSQL 15 answers it.
        let cases = [
            ("2025-03-01 00:00:00", "2024-01-15 00:00:00", (13, 17, 0)),
            ("2024-01-15 00:00:00", "2025-03-01 00:00:00", (-13, -17, 0)),
            ("2025-03-01 10:00:00", "2025-01-31 12:30:15.5", (1, 0, ((21 * 60 + 29) * 60 + 44) * 1_000_000_000 + 500_000_000)),
            ("2025-03-31 00:00:00", "2025-02-28 00:00:00", (1, 3, 0)),
            ("2025-03-01 00:00:00", "2024-02-29 00:00:00", (12, 1, 0)),
        ];
        for (a, b, (months, days, nanos)) in cases {
            let i = age(t(a), t(b));
            assert_eq!((i.months, i.days, i.nanoseconds), (months, days, nanos), "age({a}, {b})");
        }
    }
}
