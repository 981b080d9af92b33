//! `FastDatePart`: an optimizer rule (speed only) for `EXTRACT(… FROM ts)` / `date_part(…)`
//! on timestamps without time zone.
//!
//! BI tools group by hour of day, day of week, month and year constantly (Tableau's
//! `DATEPART`, Power BI's date hierarchy, every heatmap), and the benchmark's hour × weekday
//! heatmap spent 70 % of its aggregation computing those keys: Arrow's `date_part` kernel turns
//! each value into a chrono date-time first. For a timestamp without time zone the parts are
//! plain integer arithmetic on the count since 1970 (days by Euclidean division, the civil
//! date by Howard Hinnant's `civil_from_days`), so this rule replaces `date_part(part, ts)` for
//! `year`, `quarter`, `month`, `day`, `hour`, `minute`, `dow` and `isodow` by
//! [`FastDatePartUdf`], one pass over the values with the same results and type (`Int32`).
//! Other parts, other types and timestamps with a time zone are left to DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The parts computed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Year,
    Quarter,
    Month,
    Day,
    Hour,
    Minute,
    Dow,
    IsoDow,
}

impl Part {
    fn parse(s: &str) -> Option<Part> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "year" | "years" => Part::Year,
            "quarter" | "qtr" => Part::Quarter,
            "month" | "months" => Part::Month,
            "day" | "days" => Part::Day,
            "hour" | "hours" => Part::Hour,
            "minute" | "minutes" => Part::Minute,
            "dow" => Part::Dow,
            "isodow" => Part::IsoDow,
            _ => return None,
        })
    }

    /// The name of its function in plans (`EXPLAIN` shows it).
    fn function_name(self) -> &'static str {
        match self {
            Part::Year => "date_part_year",
            Part::Quarter => "date_part_quarter",
            Part::Month => "date_part_month",
            Part::Day => "date_part_day",
            Part::Hour => "date_part_hour",
            Part::Minute => "date_part_minute",
            Part::Dow => "date_part_dow",
            Part::IsoDow => "date_part_isodow",
        }
    }
}

/// Units of a timestamp per second.
fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Hinnant's algorithm, valid
/// over the whole i64 day range a timestamp can hold).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One part of one timestamp (`v` units since 1970-01-01 00:00, `per_s` units per second).
fn part_of(part: Part, v: i64, per_s: i64) -> i32 {
    let secs = v.div_euclid(per_s);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    (match part {
        Part::Hour => in_day / 3_600,
        Part::Minute => in_day % 3_600 / 60,
        // 1970-01-01 was a Thursday: 4 with Sunday 0.
        Part::Dow => (days + 4).rem_euclid(7),
        Part::IsoDow => (days + 3).rem_euclid(7) + 1,
        Part::Year => civil_from_days(days).0,
        Part::Month => civil_from_days(days).1,
        Part::Quarter => (civil_from_days(days).1 - 1) / 3 + 1,
        Part::Day => civil_from_days(days).2,
    }) as i32
}

/// `date_part(part, ts)` for a timestamp without time zone (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FastDatePartUdf {
    part: Part,
    signature: Signature,
}

impl FastDatePartUdf {
    fn new(part: Part) -> FastDatePartUdf {
        FastDatePartUdf { part, signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for FastDatePartUdf {
    fn name(&self) -> &str {
        self.part.function_name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else { return exec_err!("{} takes one argument", self.name()) };
        let (array, scalar): (ArrayRef, bool) = match arg {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
        };
        let DataType::Timestamp(unit, None) = array.data_type() else {
            return exec_err!("{} expects a timestamp without time zone, not {}", self.name(), array.data_type());
        };
        let per_s = per_second(unit);
        let raw = datafusion::arrow::compute::cast(&array, &DataType::Int64)?;
        let values = raw.as_primitive::<Int64Type>();
        let out: Int32Array = values.unary(|v| part_of(self.part, v, per_s));
        let out: ArrayRef = Arc::new(out);
        crate::pg::functions::scalar_if(scalar, out)
    }
}

/// The rule (see the module documentation).
#[derive(Debug, Default)]
pub struct FastDatePart;

impl FastDatePart {
    /// `date_part(part, e)` → the fast function, when `e` is a timestamp without time zone
    /// over `input` (the schema the expression reads).
    fn rewrite(e: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else { return Ok(Transformed::no(e)) };
        if func.name() != "date_part" || args.len() != 2 {
            return Ok(Transformed::no(e));
        }
        let part = match &args[0] {
            Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => Part::parse(s),
            _ => None,
        };
        let Some(part) = part else { return Ok(Transformed::no(e)) };
        if !matches!(args[1].get_type(input), Ok(DataType::Timestamp(_, None))) {
            return Ok(Transformed::no(e));
        }
        let udf = Arc::new(ScalarUDF::new_from_impl(FastDatePartUdf::new(part)));
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![args[1].clone()]))))
    }
}

impl OptimizerRule for FastDatePart {
    fn name(&self) -> &str {
        "fast_date_part"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| {
            if node.inputs().len() != 1 {
                return Ok(Transformed::no(node));
            }
            let names = NamePreserver::new(&node);
            let input = node.inputs()[0].schema().clone();
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let t = e.transform_up(|x| FastDatePart::rewrite(x, &input))?;
                Ok(if t.transformed { Transformed::yes(saved.restore(t.data)) } else { t })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::compute::kernels::temporal::{DatePart, date_part};

    /// Every part equals Arrow's chrono-based kernel, over timestamps from 1600 to 2400
    /// (before 1970, leap years, 1900 and 2100 that are not, every hour and weekday).
    #[test]
    fn parts_equal_arrows_kernel() {
        let mut values = Vec::new();
        let mut v: i64 = -11_676_096_000_000_000; // 1600-01-01
        let step: i64 = 3_600_000_000 * 37 + 1_234_567; // 37 h and a bit: walks every hour and day
        while v < 13_569_465_600_000_000 {
            values.push(v);
            v += step;
        }
        values.extend([-1, 0, 1, 951_782_400_000_000, 4_107_542_400_000_000]); // around 1970, 2000-02-29, 2100-03-01
        let array = TimestampMicrosecondArray::from(values.clone());
        for (part, kernel) in [
            (Part::Year, DatePart::Year),
            (Part::Quarter, DatePart::Quarter),
            (Part::Month, DatePart::Month),
            (Part::Day, DatePart::Day),
            (Part::Hour, DatePart::Hour),
            (Part::Minute, DatePart::Minute),
            (Part::Dow, DatePart::DayOfWeekSunday0),
            (Part::IsoDow, DatePart::DayOfWeekMonday1),
        ] {
            let expected = date_part(&array, kernel).unwrap();
            let expected = expected.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            for (i, v) in values.iter().enumerate() {
                assert_eq!(part_of(part, *v, 1_000_000), expected.value(i), "{part:?} of {v} µs");
            }
        }
    }
}
