//! Caps on what one function call may allocate, the way PostgreSQL refuses a value over 1 GB.
//!
//! A few functions size their result from a number the client gives (`lpad('x', n)`,
//! `repeat(s, n)`, `generate_series(a, b)`, `array_repeat(x, n)`, `format('%<n>s', …)`) or
//! multiply their inputs (`replace`, `regexp_replace`). Their allocations are not in the
//! memory pool, and an allocation the machine cannot serve aborts the whole process, so each
//! is wrapped in [`Bounded`]: before the function runs, the size of every result value and of
//! the whole batch is worked out from the arguments, and a call over [`MAX_VALUE_BYTES`] (or a
//! batch over [`MAX_BATCH_BYTES`]) fails with SQLSTATE 54000, as PostgreSQL's
//! "requested length too large" does. [`bound_functions`] wraps them all in a session.
//!
//! `||` and `concat` are not here: their result is no larger than inputs that already exist.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::ExprSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use crate::error::{Error, ErrorKind};

/// The largest value a function may return: PostgreSQL's MaxAllocSize (1 GB - 1).
pub const MAX_VALUE_BYTES: u128 = (1 << 30) - 1;
/// The most one call may return over one batch of rows.
pub const MAX_BATCH_BYTES: u128 = 1 << 30;

/// How a function's result size follows from its arguments: bytes of the value at `row`.
type Estimate = fn(&Args, usize) -> u128;

/// The functions wrapped, with how each one's result size is estimated (an upper bound).
const BOUNDED: &[(&str, Estimate)] = &[
    ("lpad", pad),
    ("rpad", pad),
    ("repeat", |a, r| a.bytes(0, r).saturating_mul(a.count(1, r))),
    ("array_repeat", |a, r| a.bytes(0, r).max(8).saturating_mul(a.count(1, r))),
    ("array_resize", |a, r| a.count(1, r).saturating_mul(a.bytes(2, r).max(8))),
    ("range", series),
    ("generate_series", series),
    ("replace", replace),
    ("regexp_replace", regexp_replace),
];

/// Wraps every function of [`BOUNDED`] registered in `ctx` (call after registering them all).
pub fn bound_functions(ctx: &SessionContext) {
    for (name, estimate) in BOUNDED {
        if let Some(inner) = ctx.state().scalar_functions().get(*name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded { inner, estimate: *estimate }));
        }
    }
}

/// The error for a result over the cap, SQLSTATE 54000 (program_limit_exceeded).
pub fn too_large(function: &str, bytes: u128, rows: usize) -> DataFusionError {
    let what = if rows <= 1 {
        format!("{function}(): requested length too large ({bytes} bytes; a value may take at most 1 GB)")
    } else {
        format!("{function}(): requested length too large ({bytes} bytes over {rows} rows; one call may return at most 1 GB per batch)")
    };
    let e = Error::new(ErrorKind::ProgramLimitExceeded, what)
        .with_hint("ask for a shorter result, or apply the function to fewer rows");
    DataFusionError::External(Box::new(e))
}

/// Adds up the result sizes of one call; [`Budget::add`] fails past the caps.
pub struct Budget<'a> {
    function: &'a str,
    total: u128,
    rows: usize,
}

impl<'a> Budget<'a> {
    pub fn new(function: &'a str) -> Self {
        Budget { function, total: 0, rows: 0 }
    }

    /// Counts a value of `bytes`; an error when it, or the batch so far, is over the cap.
    pub fn add(&mut self, bytes: u128) -> Result<()> {
        self.total = self.total.saturating_add(bytes);
        self.rows += 1;
        if bytes > MAX_VALUE_BYTES {
            return Err(too_large(self.function, bytes, 1));
        }
        if self.total > MAX_BATCH_BYTES {
            return Err(too_large(self.function, self.total, self.rows));
        }
        Ok(())
    }
}

/// A function's arguments for one batch, read per row (a scalar is the same at every row).
/// Each argument is cast at most once per type asked for, for the whole batch.
pub struct Args {
    arrays: Vec<(ArrayRef, bool)>,
    casts: Vec<[std::sync::OnceLock<Option<ArrayRef>>; 3]>,
}

/// The types [`Args`] casts arguments to: integers, timestamps in microseconds, intervals.
#[derive(Clone, Copy)]
enum As {
    Int = 0,
    Micros = 1,
    Interval = 2,
}

impl Args {
    fn new(args: &[ColumnarValue]) -> Result<Args> {
        let arrays: Vec<(ArrayRef, bool)> = args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Ok((s.to_array_of_size(1)?, true)),
                ColumnarValue::Array(a) => Ok((a.clone(), false)),
            })
            .collect::<Result<_>>()?;
        let casts = arrays.iter().map(|_| Default::default()).collect();
        Ok(Args { arrays, casts })
    }

    fn at(&self, arg: usize, row: usize) -> Option<(&ArrayRef, usize)> {
        let (a, scalar) = self.arrays.get(arg)?;
        let row = if *scalar { 0 } else { row };
        (row < a.len() && !a.is_null(row)).then_some((a, row))
    }

    /// The value at `row` of argument `arg` cast to `to`, from the argument cast once.
    fn cast_at(&self, arg: usize, row: usize, to: As) -> Option<(&ArrayRef, usize)> {
        let (_, row) = self.at(arg, row)?;
        let cast = self.casts[arg][to as usize].get_or_init(|| {
            use datafusion::arrow::compute::cast;
            let a = &self.arrays[arg].0;
            match to {
                As::Int => cast(a, &DataType::Int64).ok(),
                As::Micros => cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None)).and_then(|t| cast(&t, &DataType::Int64)).ok(),
                As::Interval => cast(a, &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)).ok(),
            }
        });
        cast.as_ref().filter(|c| c.is_valid(row)).map(|c| (c, row))
    }

    /// The integer at `row` of argument `arg`, when it is one.
    fn int(&self, arg: usize, row: usize) -> Option<i64> {
        let (c, row) = self.cast_at(arg, row, As::Int)?;
        Some(c.as_primitive_opt::<Int64Type>()?.value(row))
    }

    /// A count argument: negative and missing count as nothing.
    fn count(&self, arg: usize, row: usize) -> u128 {
        self.int(arg, row).map_or(0, |n| n.max(0) as u128)
    }

    /// The bytes the value at `row` of argument `arg` takes (0 when absent or NULL).
    fn bytes(&self, arg: usize, row: usize) -> u128 {
        match (self.text(arg, row), self.at(arg, row)) {
            (Some(t), _) => t.len() as u128,
            (None, Some((a, row))) => a.slice(row, 1).to_data().get_slice_memory_size().unwrap_or(8) as u128,
            (None, None) => 0,
        }
    }

    /// The text at `row` of argument `arg`, when it is text.
    fn text(&self, arg: usize, row: usize) -> Option<&str> {
        let (a, row) = self.at(arg, row)?;
        match a.data_type() {
            DataType::Utf8 => Some(a.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row)),
            DataType::Utf8View => Some(a.as_string_view().value(row)),
            _ => None,
        }
    }

    /// Whether the text at `row` of argument `arg` is ASCII (absent counts as ASCII).
    fn ascii(&self, arg: usize, row: usize) -> bool {
        self.at(arg, row).is_none() || self.text(arg, row).is_some_and(str::is_ascii)
    }

    /// A date or timestamp argument in microseconds since the epoch.
    fn micros(&self, arg: usize, row: usize) -> Option<i64> {
        let (c, row) = self.cast_at(arg, row, As::Micros)?;
        Some(c.as_primitive_opt::<Int64Type>()?.value(row))
    }

    /// An interval argument's shortest length in microseconds (a month counted as 28 days).
    fn interval_micros(&self, arg: usize, row: usize) -> Option<i128> {
        let (c, row) = self.cast_at(arg, row, As::Interval)?;
        let v = c.as_primitive_opt::<IntervalMonthDayNanoType>()?.value(row);
        const DAY: i128 = 86_400_000_000;
        Some(v.months as i128 * 28 * DAY + v.days as i128 * DAY + v.nanoseconds as i128 / 1000)
    }
}

/// `lpad(s, n [, fill])` / `rpad`: n characters, one byte each when all is ASCII, else up to four.
fn pad(a: &Args, r: usize) -> u128 {
    let width = if a.ascii(0, r) && a.ascii(2, r) { 1 } else { 4 };
    a.count(1, r).saturating_mul(width)
}

/// `range` / `generate_series` as arrays: (stop - start) / step elements of 8 bytes; integers
/// with an integer step, dates and timestamps with an interval step (by the first argument's
/// type: a timestamp also casts to an integer, in its own unit).
fn series(a: &Args, r: usize) -> u128 {
    let temporal = a.arrays.first().is_some_and(|(arr, _)| matches!(arr.data_type(), DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)));
    let (start, stop, step) = if temporal {
        (a.micros(0, r).map(i128::from), a.micros(1, r).map(i128::from), a.interval_micros(2, r))
    } else if a.arrays.len() == 1 {
        (Some(0i128), a.int(0, r).map(i128::from), Some(1i128))
    } else {
        (a.int(0, r).map(i128::from), a.int(1, r).map(i128::from), Some(a.int(2, r).map_or(1, i128::from)))
    };
    match (start, stop, step) {
        (Some(start), Some(stop), Some(step)) if step != 0 && (stop - start).signum() * step.signum() >= 0 => {
            ((stop - start) / step).unsigned_abs().saturating_add(1).saturating_mul(8)
        }
        _ => 0,
    }
}

/// `replace(s, from, to)`: the text with each actual occurrence of `from` replaced.
fn replace(a: &Args, r: usize) -> u128 {
    let (s, from, to) = (a.bytes(0, r), a.bytes(1, r), a.bytes(2, r));
    match (a.text(0, r), a.text(1, r)) {
        (Some(text), Some(pattern)) if !pattern.is_empty() => {
            let n = text.matches(pattern).count() as u128;
            s - n * from + n * to
        }
        _ => s,
    }
}

/// `regexp_replace(s, pattern, replacement [, flags])`: at most len(s)+1 matches (one without
/// the `g` flag), each replaced by the replacement's text; matches do not overlap, so all
/// expansions of one back-reference together take at most len(s).
fn regexp_replace(a: &Args, r: usize) -> u128 {
    let (s, repl) = (a.bytes(0, r), a.bytes(2, r));
    let refs = a.text(2, r).map_or(0, |t| t.matches(['\\', '$']).count() as u128);
    let global = a.text(3, r).is_some_and(|f| f.contains('g'));
    let matches = if global { s + 1 } else { 1 };
    s.saturating_add(matches.saturating_mul(repl)).saturating_add(refs.saturating_mul(s))
}

/// A function whose result size is checked against the caps before it runs; delegates all
/// else to the function it wraps.
#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    estimate: Estimate,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}
impl Eq for Bounded {}
impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    #[allow(deprecated)]
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.inner.inner().is_nullable(args, schema)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = super::functions::result_rows(&args);
        let view = Args::new(&args.args)?;
        let mut budget = Budget::new(self.name());
        for r in 0..rows {
            budget.add((self.estimate)(&view, r))?;
        }
        self.inner.invoke_with_args(args)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }
    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
