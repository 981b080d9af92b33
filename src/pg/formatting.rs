//! PostgreSQL's data type formatting functions (manual §9.8) over Arrow arrays: `to_char` of
//! dates, timestamps, times and numbers, `to_date`, `to_timestamp` and `to_number` with a
//! template. The templates themselves are [`super::template`]'s; DataFusion's namesakes take
//! chrono patterns (`%Y-%m`), which BI tools never send, and `to_char` had no number form.
//! `to_date(text)` and `to_timestamp(text or number)` without a template stay DataFusion's.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Decimal128Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, Float64Type, Int64Type, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::analyze::external;
use super::functions::{result_rows, result_shape};
use super::template::{self, Digits, Zone};
use crate::error::{Error, ErrorKind};

/// Registers `to_char`, `to_date`, `to_timestamp` and `to_number`.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::from(ToChar::new()));
    // The one-argument forms stay the session's own (to_timestamp reads its time zone).
    for (name, target) in [("to_date", Target::Date), ("to_timestamp", Target::Timestamp)] {
        let inner = ctx.state().scalar_functions().get(name).cloned().unwrap_or_else(|| match target {
            Target::Date => datafusion::functions::datetime::to_date(),
            Target::Timestamp => datafusion::functions::datetime::to_timestamp(ctx.copied_config().options()),
        });
        ctx.register_udf(ScalarUDF::from(Parse { target, inner, signature: Signature::user_defined(Volatility::Immutable) }));
    }
    ctx.register_udf(ScalarUDF::from(ToNumber::new()));
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
}

/// The arguments as arrays of `rows` rows, each cast to `types[i]`.
fn arrays(args: &ScalarFunctionArgs, types: &[DataType]) -> Result<Vec<ArrayRef>> {
    let n = result_rows(args);
    args.args.iter().zip(types).map(|(a, t)| Ok(cast(&a.to_array(n)?, t)?)).collect()
}

/// `to_char(value, template)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    signature: Signature,
}

impl ToChar {
    pub fn new() -> Self {
        ToChar { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl Default for ToChar {
    fn default() -> Self {
        Self::new()
    }
}

/// What `to_char` formats a value as.
enum Kind {
    Moment,
    Integer,
    Float,
    Decimal,
}

fn kind(t: &DataType) -> Option<Kind> {
    Some(match t {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_) => Kind::Moment,
        t if t.is_integer() => Kind::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal256(..) => Kind::Float,
        DataType::Decimal128(..) => Kind::Decimal,
        _ => return None,
    })
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let [value, template] = types else {
            return exec_err!("to_char takes a value and a template, as to_char(period, 'YYYY-MM')");
        };
        if !is_text(template) {
            return Err(external(Error::new(ErrorKind::UndefinedFunction, format!("function to_char({value}, {template}) does not exist"))
                .with_hint("The template is text: to_char(value, '9,999.99') or to_char(period, 'YYYY-MM').")));
        }
        let value = match (value, kind(value)) {
            (DataType::Timestamp(_, tz), Some(Kind::Moment)) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            (DataType::Date64, _) | (DataType::Date32, _) => DataType::Date32,
            (_, Some(Kind::Moment)) => DataType::Time64(TimeUnit::Microsecond),
            (_, Some(Kind::Integer)) => DataType::Int64,
            (_, Some(Kind::Float)) => DataType::Float64,
            (t, Some(Kind::Decimal)) => t.clone(),
            (t, None) => {
                return Err(external(Error::new(ErrorKind::UndefinedFunction, format!("function to_char({t}, text) does not exist"))
                    .with_hint("to_char formats dates, timestamps, times and numbers.")));
            }
        };
        Ok(vec![value, DataType::Utf8])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value_type = args.args[0].data_type();
        let a = arrays(&args, &[value_type.clone(), DataType::Utf8])?;
        let (values, templates) = (&a[0], a[1].as_string::<i32>());
        let mut out = StringBuilder::new();
        let zone = match &value_type {
            DataType::Timestamp(_, Some(tz)) => Some(Tz::from_str(tz)?),
            _ => None,
        };
        let numeric = !matches!(value_type, DataType::Date32 | DataType::Timestamp(..) | DataType::Time64(_));
        // The template read once, and again only where a row's template differs.
        let mut compiled: Option<(&str, Compiled)> = None;
        for r in 0..values.len() {
            if values.is_null(r) || templates.is_null(r) {
                out.append_null();
                continue;
            }
            let t = templates.value(r);
            if compiled.as_ref().is_none_or(|(text, _)| *text != t) {
                template::check_template(t).map_err(external)?;
                let c = if numeric {
                    Compiled::Number(template::NumberTemplate::parse(t).map_err(external)?)
                } else {
                    Compiled::Date(template::DateTemplate::new(t))
                };
                compiled = Some((t, c));
            }
            let (date_template, number_template) = match compiled.as_ref().map(|(_, c)| c) {
                Some(Compiled::Date(d)) => (Some(d), None),
                Some(Compiled::Number(n)) => (None, Some(n)),
                None => unreachable!("compiled above"),
            };
            let datetime = |dt: NaiveDateTime, zone: Option<&Zone>| date_template.expect("a date template").format(dt, zone);
            let number = |digits: &dyn Fn(usize) -> Digits| -> Result<String> {
                let n = number_template.expect("a number template");
                n.format(&digits(n.decimals())).map_err(external)
            };
            let out_of_range = || external(Error::new(ErrorKind::DatetimeOutOfRange, "timestamp out of range"));
            let text = match &value_type {
                DataType::Date32 => {
                    let days = values.as_primitive::<datafusion::arrow::datatypes::Date32Type>().value(r);
                    let date = epoch_date().checked_add_signed(chrono::Duration::days(days as i64)).ok_or_else(out_of_range)?;
                    datetime(date.and_hms_opt(0, 0, 0).expect("midnight"), None)
                }
                DataType::Timestamp(..) => {
                    let micros = values.as_primitive::<TimestampMicrosecondType>().value(r);
                    let utc = DateTime::from_timestamp_micros(micros).ok_or_else(out_of_range)?.naive_utc();
                    match &zone {
                        Some(tz) => {
                            let offset = tz.offset_from_utc_datetime(&utc).fix().local_minus_utc();
                            let abbreviation = if offset == 0 { "UTC".to_string() } else { offset_text(offset) };
                            let local = utc.checked_add_signed(chrono::Duration::seconds(offset as i64)).ok_or_else(out_of_range)?;
                            datetime(local, Some(&Zone { abbreviation, offset_seconds: offset }))
                        }
                        None => datetime(utc, None),
                    }
                }
                DataType::Time64(_) => {
                    let micros = values.as_primitive::<Time64MicrosecondType>().value(r);
                    // A time of day: what is past a day (Arrow's cast does not check) is out of range.
                    if !(0..86_400_000_000).contains(&micros) {
                        return Err(out_of_range());
                    }
                    let time = epoch_date().and_hms_opt(0, 0, 0).expect("midnight") + chrono::Duration::microseconds(micros);
                    datetime(time, None)
                }
                DataType::Int64 => {
                    let v = values.as_primitive::<Int64Type>().value(r);
                    number(&|decimals| Digits::from_decimal(v as i128, 0, decimals))?
                }
                DataType::Float64 => {
                    let v = values.as_primitive::<Float64Type>().value(r);
                    // NaN and infinities fill every digit position with '#', as PostgreSQL does.
                    number(&|decimals| {
                        Digits::from_float(v, decimals).unwrap_or(Digits { negative: v < 0.0, int: "9".repeat(1000), frac: String::new() })
                    })?
                }
                DataType::Decimal128(_, scale) => {
                    let v = values.as_primitive::<Decimal128Type>().value(r);
                    number(&|decimals| Digits::from_decimal(v, *scale, decimals))?
                }
                other => return exec_err!("to_char of {other}"),
            };
            out.append_value(text);
        }
        result_shape(&args.args, Arc::new(out.finish()))
    }
}

/// A template read for the rows of one batch.
enum Compiled {
    Date(template::DateTemplate),
    Number(template::NumberTemplate),
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch")
}

/// `+02`, `-05:30`: an offset as PostgreSQL abbreviates a zone without a name.
fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let (h, m) = (seconds.abs() / 3600, seconds.abs() % 3600 / 60);
    if m == 0 { format!("{sign}{h:02}") } else { format!("{sign}{h:02}:{m:02}") }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Target {
    Date,
    Timestamp,
}

/// `to_date(text, template)` and `to_timestamp(text, template)`; with one argument, DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Parse {
    target: Target,
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for Parse {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [text, template] if is_text(text) && is_text(template) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            [_, _] => Err(external(Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {}({}, {}) does not exist", self.name(), types[0], types[1]),
            )
            .with_hint("Both arguments are text: to_date('05/03/2025', 'DD/MM/YYYY').")))
            ,
            _ => self.inner.coerce_types(types).or_else(|_| Ok(types.to_vec())),
        }
    }
    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        match (types.len(), self.target) {
            (2, Target::Date) => Ok(DataType::Date32),
            // PostgreSQL's to_timestamp is a timestamp with time zone (in UTC here).
            (2, Target::Timestamp) => Ok(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
            _ => self.inner.return_type(types),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 2 {
            return self.inner.invoke_with_args(args);
        }
        let a = arrays(&args, &[DataType::Utf8, DataType::Utf8])?;
        let (texts, templates) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
        let read = |r: usize| -> Result<Option<NaiveDateTime>> {
            if texts.is_null(r) || templates.is_null(r) {
                return Ok(None);
            }
            template::parse_datetime(texts.value(r), templates.value(r)).map(Some).map_err(external)
        };
        let out: ArrayRef = match self.target {
            Target::Date => {
                let mut b = Date32Builder::with_capacity(texts.len());
                for r in 0..texts.len() {
                    b.append_option(read(r)?.map(|t| t.date().signed_duration_since(epoch_date()).num_days() as i32));
                }
                Arc::new(b.finish())
            }
            Target::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(texts.len()).with_timezone("UTC");
                for r in 0..texts.len() {
                    b.append_option(read(r)?.map(|t| t.and_utc().timestamp_micros()));
                }
                Arc::new(b.finish())
            }
        };
        result_shape(&args.args, out)
    }
}

/// `to_number(text, template)`: a numeric with the template's decimals.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToNumber {
    signature: Signature,
}

impl ToNumber {
    pub fn new() -> Self {
        ToNumber { signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable) }
    }
}

impl Default for ToNumber {
    fn default() -> Self {
        Self::new()
    }
}

/// The numeric `to_number` gives for a template: 38 digits with the template's decimals.
fn number_type(template: Option<&ScalarValue>) -> Result<DataType> {
    let decimals = match template {
        Some(ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t))) => {
            template::NumberTemplate::parse(t).map_err(external)?.decimals()
        }
        // A NULL template gives NULL; the type does not matter.
        Some(s) if s.is_null() => 0,
        _ => {
            return Err(external(Error::new(ErrorKind::FeatureNotSupported, "to_number's template must be a constant")
                .with_hint("A numeric column has one scale: write the template as a literal, to_number(text_col, '9,999.99').")));
        }
    };
    Ok(DataType::Decimal128(38, decimals.min(38) as i8))
}

impl ScalarUDFImpl for ToNumber {
    fn name(&self) -> &str {
        "to_number"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        exec_err!("to_number's type depends on its template (return_field_from_args)")
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let template = args.scalar_arguments.get(1).copied().flatten();
        Ok(Arc::new(Field::new(self.name(), number_type(template)?, true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Decimal128(precision, scale) = *args.return_field.data_type() else {
            return exec_err!("to_number returns a decimal");
        };
        let a = arrays(&args, &[DataType::Utf8, DataType::Utf8])?;
        let (texts, templates) = (a[0].as_string::<i32>(), a[1].as_string::<i32>());
        let mut b = Decimal128Builder::with_capacity(texts.len());
        for r in 0..texts.len() {
            if texts.is_null(r) || templates.is_null(r) {
                b.append_null();
                continue;
            }
            let (value, read_scale) = template::parse_number(texts.value(r), templates.value(r)).map_err(external)?;
            // A template in a column may have other decimals than the literal typed it.
            let value = rescale(value, read_scale, scale).ok_or_else(|| external(Error::new(ErrorKind::NumericValueOutOfRange, "numeric field overflow")))?;
            b.append_value(value);
        }
        result_shape(&args.args, Arc::new(b.finish().with_precision_and_scale(precision, scale)?))
    }
}

/// `value × 10^-from` as a decimal of scale `to`, rounded half away from zero.
fn rescale(value: i128, from: i8, to: i8) -> Option<i128> {
    if to >= from {
        value.checked_mul(10i128.checked_pow((to - from) as u32)?)
    } else {
        let d = 10i128.checked_pow((from - to) as u32)?;
        let (q, r) = (value / d, value % d);
        Some(q + if r.abs() * 2 >= d { value.signum() } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use crate::pg::analyze::test::answer as run;

    #[tokio::test]
    async fn formats_dates_timestamps_and_numbers() {
        assert_eq!(run("SELECT to_char(TIMESTAMP '2025-03-05 14:07:09', 'YYYY\"Q\"Q')").await, "2025Q1");
        assert_eq!(run("SELECT to_char(DATE '2025-03-05', 'FMDay, FMDDth FMMonth YYYY')").await, "Wednesday, 5th March 2025");
        assert_eq!(run("SELECT to_char(1234.5, '9,999.99')").await, " 1,234.50");
        assert_eq!(run("SELECT to_char(-7, 'FM000')").await, "-007");
        assert_eq!(run("SELECT to_char(CAST(2.5 AS DOUBLE), '9')").await, " 2");
        assert_eq!(run("SELECT to_char(CAST(NULL AS DATE), 'YYYY')").await, "");
        assert_eq!(run("SELECT to_char('x', 'YYYY')").await.split(']').next(), Some("[42883"));
        // Values past chrono's range are errors, not panics.
        assert_eq!(run("SELECT to_char(CAST(100000000 AS DATE), 'YYYY')").await.split(']').next(), Some("[22008"));
        assert_eq!(run("SELECT to_char(CAST(0 AS DATE), repeat('J', 5000))").await.split(']').next(), Some("[54000"));
    }

    #[tokio::test]
    async fn reads_dates_timestamps_and_numbers() {
        assert_eq!(run("SELECT to_date('05/03/2025', 'DD/MM/YYYY')").await, "2025-03-05");
        assert_eq!(run("SELECT to_timestamp('2025-03-05 14:07', 'YYYY-MM-DD HH24:MI')").await, "2025-03-05T14:07:00Z");
        assert_eq!(run("SELECT to_date('2025-03-05')").await, "2025-03-05");
        assert_eq!(run("SELECT to_number('1,234.5', '9,999.9')").await, "1234.5");
        assert_eq!(run("SELECT to_number('-12', '999.99')").await, "-12.00");
        assert_eq!(run("SELECT to_date('2025-02-30', 'YYYY-MM-DD')").await.split(']').next(), Some("[22008"));
        assert_eq!(run("SELECT to_number(NULL, '9.9')").await, "");
        assert_eq!(run("SELECT to_number('1', v) FROM (VALUES ('9')) AS t(v)").await.split(']').next(), Some("[0A000"));
    }
}
