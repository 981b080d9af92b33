//! Arrow → PostgreSQL: column types for RowDescription and values for DataRow, text or binary.
//!
//! Arrow arrays are first cast to a small canonical set (Int16/32/64, Float32/64, Utf8,
//! Decimal128, Date32, Timestamp µs, Time64 µs, Binary, Boolean) so that each PostgreSQL type
//! has one encoding path; anything without a PostgreSQL counterpart yet is sent as text.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::error::Error;
use pgwire::messages::data::DataRow;
use rust_decimal::Decimal;

/// The canonical Arrow type a column is cast to before encoding, and its PostgreSQL type.
pub fn canonical(dt: &DataType) -> (DataType, Type) {
    use DataType::*;
    match dt {
        Boolean => (Boolean, Type::BOOL),
        Int8 | Int16 | UInt8 => (Int16, Type::INT2),
        Int32 | UInt16 => (Int32, Type::INT4),
        Int64 | UInt32 => (Int64, Type::INT8),
        UInt64 => (Decimal128(20, 0), Type::NUMERIC),
        Float16 | Float32 => (Float32, Type::FLOAT4),
        Float64 => (Float64, Type::FLOAT8),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) if *p <= 38 => (Decimal128(*p, *s), Type::NUMERIC),
        Utf8 | LargeUtf8 | Utf8View => (Utf8, Type::TEXT),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => (Binary, Type::BYTEA),
        Date32 | Date64 => (Date32, Type::DATE),
        Timestamp(_, None) => (Timestamp(TimeUnit::Microsecond, None), Type::TIMESTAMP),
        Timestamp(_, Some(_)) => (Timestamp(TimeUnit::Microsecond, Some("UTC".into())), Type::TIMESTAMPTZ),
        Time32(_) | Time64(_) => (Time64(TimeUnit::Microsecond), Type::TIME),
        Interval(_) | Duration(_) => (Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano), Type::INTERVAL),
        Dictionary(_, v) => canonical(v),
        List(f) | LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f) => {
            let (elem, _) = canonical(f.data_type());
            let array_type = match elem {
                Boolean => Type::BOOL_ARRAY,
                Int16 => Type::INT2_ARRAY,
                Int32 => Type::INT4_ARRAY,
                Int64 => Type::INT8_ARRAY,
                Float32 => Type::FLOAT4_ARRAY,
                Float64 => Type::FLOAT8_ARRAY,
                Utf8 => Type::TEXT_ARRAY,
                // Arrays of other types go as text, in Arrow's rendering.
                _ => return (Utf8, Type::TEXT),
            };
            (List(Arc::new(datafusion::arrow::datatypes::Field::new("item", elem, true))), array_type)
        }
        Null => (Utf8, Type::TEXT),
        _ => (Utf8, Type::TEXT),
    }
}

/// PostgreSQL's check of a Bind's result format codes: none, one for all, or one per column.
pub fn check_result_formats(format: &Format, columns: usize) -> Result<(), crate::error::Error> {
    match format {
        Format::Individual(codes) if codes.len() != columns => Err(crate::error::Error::new(
            crate::error::ErrorKind::ProtocolViolation,
            format!("bind message has {} result formats but query has {columns} columns", codes.len()),
        )),
        _ => Ok(()),
    }
}

/// RowDescription fields for a result schema, in the formats the client asked for.
pub fn field_infos(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (dt, pg) = canonical(f.data_type());
            // pgwire's format_for indexes the codes: past them (a Bind with too few, refused
            // by check_result_formats) it would panic.
            let field_format = match format {
                Format::Individual(codes) if i >= codes.len() => pgwire::api::results::FieldFormat::Text,
                _ => format.format_for(i),
            };
            let mut info = FieldInfo::new(f.name().clone(), None, None, pg, field_format);
            if let DataType::Decimal128(p, s) = dt {
                // PostgreSQL's numeric typmod: ((precision << 16) | scale) + VARHDRSZ.
                info = info.with_type_modifier(((p as i32) << 16 | (s as i32 & 0xffff)) + 4);
            }
            info
        })
        .collect()
}

/// PostgreSQL's text form of a float (extra_float_digits ≥ 1, its default): the shortest
/// digits that read back exactly — `shortest` is Rust's, which are those — in plain notation
/// when the decimal exponent is in [-4, `digits`), else as `1.5e+20`; `NaN`, `Infinity`.
pub fn float_text(v: f64, digits: i32, shortest: String) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let exponent = v.abs().log10().floor() as i32;
    if (-4..digits).contains(&exponent) {
        return shortest;
    }
    // Rust's {:e} gives the same shortest digits as "1.5e20"; PostgreSQL writes "1.5e+20".
    let sci = if shortest.contains('e') { shortest } else { format!("{:e}", shortest.parse::<f64>().unwrap_or(v)) };
    match sci.split_once('e') {
        Some((m, e)) => {
            let n: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if n < 0 { '-' } else { '+' }, n.abs())
        }
        None => sci,
    }
}

/// One array value: binary through postgres-types, text in PostgreSQL's `{…}` form with its
/// quoting rules (pgwire's text arrays do not quote).
fn encode_array(enc: &mut DataRowEncoder, items: &ArrayRef, format: FieldFormat) -> PgWireResult<()> {
    fn values<T: Clone>(n: usize, valid: impl Fn(usize) -> bool, get: impl Fn(usize) -> T) -> Vec<Option<T>> {
        (0..n).map(|i| valid(i).then(|| get(i))).collect()
    }
    let n = items.len();
    let valid = |i: usize| items.is_valid(i);
    if format == FieldFormat::Binary {
        return match items.data_type() {
            DataType::Boolean => enc.encode_field(&values(n, valid, |i| items.as_boolean().value(i))),
            DataType::Int16 => enc.encode_field(&values(n, valid, |i| items.as_primitive::<datafusion::arrow::datatypes::Int16Type>().value(i))),
            DataType::Int32 => enc.encode_field(&values(n, valid, |i| items.as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(i))),
            DataType::Int64 => enc.encode_field(&values(n, valid, |i| items.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(i))),
            DataType::Float32 => enc.encode_field(&values(n, valid, |i| items.as_primitive::<datafusion::arrow::datatypes::Float32Type>().value(i))),
            DataType::Float64 => enc.encode_field(&values(n, valid, |i| items.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(i))),
            _ => enc.encode_field(&values(n, valid, |i| items.as_string::<i32>().value(i).to_string())),
        };
    }
    let mut text = String::from("{");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        if items.is_null(i) {
            text.push_str("NULL");
            continue;
        }
        match items.data_type() {
            DataType::Boolean => text.push(if items.as_boolean().value(i) { 't' } else { 'f' }),
            DataType::Utf8 => text.push_str(&quote_array_item(items.as_string::<i32>().value(i))),
            _ => text.push_str(&datafusion::arrow::util::display::array_value_to_string(items, i).map_err(|e| {
                pgwire::error::PgWireError::ApiError(Box::new(e))
            })?),
        }
    }
    text.push('}');
    enc.encode_field_with_type_and_format(&text, &Type::TEXT, format, &Default::default())
}

/// An array element as PostgreSQL writes it: quoted when empty, `NULL`-like, or holding
/// braces, commas, quotes, backslashes or spaces.
fn quote_array_item(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.eq_ignore_ascii_case("null")
        && !s.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An interval as PostgreSQL prints it in its default `postgres` IntervalStyle:
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days`, `00:00:00`.
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        parts.push(unit(years as i64, "year"));
    }
    if months != 0 {
        parts.push(unit(months as i64, "mon"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (secs, frac) = (m / 1_000_000, m % 1_000_000);
        let mut t = format!("{sign}{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

/// A duration (what `timestamp - timestamp` gives) as PostgreSQL's interval of days and time,
/// as PostgreSQL's own timestamp subtraction returns it (`729 days 12:00:00`).
fn duration_as_interval(c: &ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::IntervalMonthDayNanoArray;
    use datafusion::arrow::datatypes::{DurationMicrosecondType, IntervalMonthDayNano};
    const DAY: i64 = 86_400_000_000;
    // A duration in seconds beyond what microseconds hold is a cast error, not a panic.
    let micros = cast(c, &DataType::Duration(TimeUnit::Microsecond))?;
    let micros = micros.as_primitive::<DurationMicrosecondType>();
    let out: IntervalMonthDayNanoArray = micros
        .iter()
        .map(|v| {
            v.map(|us| {
                let days = i32::try_from(us / DAY).map_err(|_| out_of_range_arrow("interval"))?;
                Ok::<_, datafusion::arrow::error::ArrowError>(IntervalMonthDayNano::new(0, days, (us % DAY) * 1_000))
            })
            .transpose()
        })
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(out))
}

fn out_of_range_arrow(what: &str) -> datafusion::arrow::error::ArrowError {
    datafusion::arrow::error::ArrowError::ComputeError(format!("{what} out of range"))
}

/// The error for a value PostgreSQL's clients cannot be sent (22008, datetime_field_overflow).
fn out_of_range(what: &str) -> pgwire::error::PgWireError {
    let e = crate::error::Error::new(crate::error::ErrorKind::DatetimeOutOfRange, format!("{what} out of range"))
        .with_hint("dates and timestamps go from 262143 BC to 262142 AD here");
    to_pg_error(e)
}

/// Encodes every row of a batch.
pub fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let cols = canonical_columns(batch)?;
    let mut enc = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (col, field) in cols.iter().zip(fields.iter()) {
            encode_value(&mut enc, col, row, field)?;
        }
        rows.push(enc.take_row());
    }
    Ok(rows)
}

/// A batch's columns cast to their canonical types ([`canonical`]), the ones [`encode_value`]
/// writes.
fn canonical_columns(batch: &RecordBatch) -> PgWireResult<Vec<ArrayRef>> {
    batch
        .columns()
        .iter()
        .map(|c| {
            let (dt, _) = canonical(c.data_type());
            match c.data_type() {
                d if d == &dt => Ok(c.clone()),
                DataType::Duration(_) => duration_as_interval(c),
                _ => cast(c, &dt),
            }
        })
        .collect::<Result<_, _>>()
        .map_err(|e| pgwire::error::PgWireError::ApiError(Box::new(e)))
}

/// The values of a batch in their PostgreSQL text form, one at a time: the bytes a text
/// DataRow carries for each field, which COPY's text and CSV formats write (escaped) without
/// building DataRows. Numbers, dates, timestamps, booleans and text are written here; the
/// other types (bytea, arrays, time, interval, dates beyond year 9999) through the DataRow
/// encoder, so that both paths always write the same text.
pub struct TextValues {
    cols: Vec<ArrayRef>,
    fields: Vec<FieldInfo>,
    /// Per column, a one-field encoder for the types written through it.
    encoders: Vec<DataRowEncoder>,
}

impl TextValues {
    /// `fields` must be in text format.
    pub fn new(batch: &RecordBatch, fields: &[FieldInfo]) -> PgWireResult<TextValues> {
        let cols = canonical_columns(batch)?;
        if cols.len() != fields.len() {
            return Err(PgWireError::ApiError(format!("a batch of {} columns for {} fields", cols.len(), fields.len()).into()));
        }
        let encoders = fields.iter().map(|f| DataRowEncoder::new(Arc::new(vec![f.clone()]))).collect();
        Ok(TextValues { cols, fields: fields.to_vec(), encoders })
    }

    /// Writes the text form of the value at `row` of column `col` into `out` (cleared first);
    /// false for NULL.
    pub fn value(&mut self, col: usize, row: usize, out: &mut Vec<u8>) -> PgWireResult<bool> {
        let c = &self.cols[col];
        if c.is_null(row) {
            return Ok(false);
        }
        out.clear();
        let mut buf = TextBuf::new();
        let text: Option<&str> = match c.data_type() {
            DataType::Int16 | DataType::Int32 | DataType::Int64 => Some(buf.int(int_value(c, row))),
            DataType::Decimal128(_, s) if *s >= 0 => Some(buf.decimal(c.as_primitive::<Decimal128Type>().value(row), *s as u32)),
            DataType::Date32 => buf.date(c.as_primitive::<Date32Type>().value(row)),
            DataType::Timestamp(_, tz) => buf.timestamp(c.as_primitive::<TimestampMicrosecondType>().value(row), tz.is_some()),
            DataType::Utf8 => Some(c.as_string::<i32>().value(row)),
            DataType::Boolean => Some(if c.as_boolean().value(row) { "t" } else { "f" }),
            DataType::Float32 => {
                let v = c.as_primitive::<Float32Type>().value(row);
                out.extend_from_slice(float_text(f64::from(v), 6, v.to_string()).as_bytes());
                return Ok(true);
            }
            DataType::Float64 => {
                let v = c.as_primitive::<Float64Type>().value(row);
                out.extend_from_slice(float_text(v, 15, v.to_string()).as_bytes());
                return Ok(true);
            }
            _ => None,
        };
        match text {
            Some(text) => out.extend_from_slice(text.as_bytes()),
            None => {
                let enc = &mut self.encoders[col];
                encode_value(enc, c, row, &self.fields[col])?;
                // The field's 4-byte length, then its text.
                out.extend_from_slice(enc.take_row().data.get(4..).unwrap_or_default());
            }
        }
        Ok(true)
    }
}

/// The value at `row` of an Int16, Int32 or Int64 column.
fn int_value(col: &ArrayRef, row: usize) -> i64 {
    match col.data_type() {
        DataType::Int16 => i64::from(col.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => i64::from(col.as_primitive::<Int32Type>().value(row)),
        _ => col.as_primitive::<Int64Type>().value(row),
    }
}

/// A value's PostgreSQL text form written into a buffer on the stack: the numbers, dates and
/// timestamps of a streamed result, which `format!`, chrono's format interpreter and
/// rust_decimal's `Display` wrote at about a third of the binary encoder's speed.
struct TextBuf {
    bytes: [u8; 48],
    len: usize,
}

impl TextBuf {
    fn new() -> TextBuf {
        TextBuf { bytes: [0; 48], len: 0 }
    }

    fn text(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII")
    }

    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// `v` in decimal, at least `width` digits (zeros in front).
    fn digits(&mut self, v: u128, width: usize) {
        let mut tmp = [0u8; 40];
        let mut i = tmp.len();
        if let Ok(mut v) = u64::try_from(v) {
            // The common case, without 128-bit divisions.
            loop {
                i -= 1;
                tmp[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
        } else {
            let mut v = v;
            while v > 0 {
                i -= 1;
                tmp[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        for _ in (tmp.len() - i)..width {
            self.byte(b'0');
        }
        let n = tmp.len() - i;
        self.bytes[self.len..self.len + n].copy_from_slice(&tmp[i..]);
        self.len += n;
    }

    fn int(&mut self, v: i64) -> &str {
        if v < 0 {
            self.byte(b'-');
        }
        self.digits(u128::from(v.unsigned_abs()), 1);
        self.text()
    }

    /// A numeric of `scale` decimals, all of them printed (`12.50`), as PostgreSQL prints it.
    fn decimal(&mut self, v: i128, scale: u32) -> &str {
        let abs = v.unsigned_abs();
        let unit = 10u128.pow(scale);
        if v < 0 {
            self.byte(b'-');
        }
        self.digits(abs / unit, 1);
        if scale > 0 {
            self.byte(b'.');
            self.digits(abs % unit, scale as usize);
        }
        self.text()
    }

    /// `YYYY-MM-DD` for years 1 to 9999 (PostgreSQL writes others with more digits or BC).
    fn ymd(&mut self, days: i64) -> Option<()> {
        let (y, m, d) = crate::engine::fast_time::civil_from_days(days);
        if !(1..=9999).contains(&y) {
            return None;
        }
        self.digits(y as u128, 4);
        self.byte(b'-');
        self.digits(m as u128, 2);
        self.byte(b'-');
        self.digits(d as u128, 2);
        Some(())
    }

    fn date(&mut self, days: i32) -> Option<&str> {
        self.ymd(i64::from(days))?;
        Some(self.text())
    }

    /// PostgreSQL's text form of a timestamp (µs since 1970): fractional seconds only when
    /// non-zero, trailing zeros trimmed; `+00` for one with a time zone (sessions are UTC).
    fn timestamp(&mut self, us: i64, tz: bool) -> Option<&str> {
        let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
        let (days, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        self.ymd(days)?;
        self.byte(b' ');
        self.digits((in_day / 3_600) as u128, 2);
        self.byte(b':');
        self.digits((in_day / 60 % 60) as u128, 2);
        self.byte(b':');
        self.digits((in_day % 60) as u128, 2);
        if micros != 0 {
            let (mut frac, mut width) = (micros, 6);
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            self.byte(b'.');
            self.digits(frac as u128, width);
        }
        if tz {
            self.bytes[self.len..self.len + 3].copy_from_slice(b"+00");
            self.len += 3;
        }
        Some(self.text())
    }
}

fn encode_value(enc: &mut DataRowEncoder, col: &ArrayRef, row: usize, field: &FieldInfo) -> PgWireResult<()> {
    let format = field.format();
    // The field's own type and options, borrowed (`encode_field` clones both for each value).
    let (ty, options) = (field.datatype(), field.format_options().as_ref());
    if col.is_null(row) {
        return enc.encode_field_with_type_and_format(&None::<i32>, ty, format, options);
    }
    let mut buf = TextBuf::new();
    match col.data_type() {
        DataType::Boolean => enc.encode_field_with_type_and_format(&col.as_boolean().value(row), ty, format, options),
        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            if format == FieldFormat::Text {
                return enc.encode_field_with_type_and_format(&buf.int(int_value(col, row)), ty, format, options);
            }
            match col.data_type() {
                DataType::Int16 => enc.encode_field_with_type_and_format(&col.as_primitive::<Int16Type>().value(row), ty, format, options),
                DataType::Int32 => enc.encode_field_with_type_and_format(&col.as_primitive::<Int32Type>().value(row), ty, format, options),
                _ => enc.encode_field_with_type_and_format(&col.as_primitive::<Int64Type>().value(row), ty, format, options),
            }
        }
        DataType::Float32 => {
            let v = col.as_primitive::<Float32Type>().value(row);
            if format == FieldFormat::Text {
                enc.encode_field_with_type_and_format(&float_text(v as f64, 6, v.to_string()), &Type::FLOAT4, format, options)
            } else {
                enc.encode_field_with_type_and_format(&v, ty, format, options)
            }
        }
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            if format == FieldFormat::Text {
                enc.encode_field_with_type_and_format(&float_text(v, 15, v.to_string()), &Type::FLOAT8, format, options)
            } else {
                enc.encode_field_with_type_and_format(&v, ty, format, options)
            }
        }
        DataType::Utf8 => enc.encode_field_with_type_and_format(&col.as_string::<i32>().value(row), ty, format, options),
        DataType::Binary => enc.encode_field_with_type_and_format(&col.as_binary::<i32>().value(row), ty, format, options),
        DataType::Decimal128(_, s) => {
            let v = col.as_primitive::<Decimal128Type>().value(row);
            if format == FieldFormat::Text && *s >= 0 {
                // PostgreSQL's text form of numeric: every digit of the scale, exact at any precision.
                return enc.encode_field_with_type_and_format(&buf.decimal(v, *s as u32), ty, format, options);
            }
            // A negative scale (10^-s units) goes as exact text, never at the wrong magnitude.
            match Decimal::try_from_i128_with_scale(v, (*s).max(0) as u32).ok().filter(|_| *s >= 0) {
                Some(d) => enc.encode_field_with_type_and_format(&d, ty, format, options),
                // Beyond rust_decimal's 28 digits: PostgreSQL's text form is still exact.
                None => enc.encode_field_with_type_and_format(
                    &col.as_primitive::<Decimal128Type>().value_as_string(row),
                    ty,
                    format,
                    options,
                ),
            }
        }
        DataType::Date32 => {
            let days = col.as_primitive::<Date32Type>().value(row);
            if format == FieldFormat::Text
                && let Some(text) = buf.date(days)
            {
                return enc.encode_field_with_type_and_format(&text, ty, format, options);
            }
            let d = NaiveDate::from_ymd_opt(1970, 1, 1)
                .expect("epoch")
                .checked_add_signed(chrono::Duration::days(days as i64))
                .ok_or_else(|| out_of_range("date"))?;
            enc.encode_field_with_type_and_format(&d, ty, format, options)
        }
        DataType::Timestamp(_, tz) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
            let pg_type = if tz.is_some() { Type::TIMESTAMPTZ } else { Type::TIMESTAMP };
            if format == FieldFormat::Text
                && let Some(text) = buf.timestamp(us, tz.is_some())
            {
                return enc.encode_field_with_type_and_format(&text, &pg_type, format, options);
            }
            let dt = DateTime::from_timestamp_micros(us).ok_or_else(|| out_of_range("timestamp"))?;
            if format == FieldFormat::Text {
                // Years before 1 or after 9999 ([`TextBuf::timestamp`] writes the others).
                let text = crate::pg::analyze::timestamp_text::timestamp_text(us, tz.is_some()).ok_or_else(|| out_of_range("timestamp"))?;
                enc.encode_field_with_type_and_format(&text, &pg_type, format, options)
            } else if tz.is_some() {
                enc.encode_field_with_type_and_format(&dt, ty, format, options)
            } else {
                enc.encode_field_with_type_and_format(&dt.naive_utc(), ty, format, options)
            }
        }
        DataType::Time64(_) => {
            let us = col.as_primitive::<Time64MicrosecondType>().value(row);
            let t = u32::try_from(us / 1_000_000)
                .ok()
                .filter(|_| us >= 0)
                .and_then(|secs| NaiveTime::from_num_seconds_from_midnight_opt(secs, ((us % 1_000_000) * 1000) as u32))
                .ok_or_else(|| out_of_range("time"))?;
            enc.encode_field_with_type_and_format(&t, ty, format, options)
        }
        DataType::Interval(_) => {
            let v = col.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>().value(row);
            // PostgreSQL keeps microseconds; finer parts are rounded toward zero.
            let (months, days, micros) = (v.months, v.days, v.nanoseconds / 1_000);
            if format == FieldFormat::Text {
                enc.encode_field_with_type_and_format(&interval_text(months, days, micros), &Type::INTERVAL, format, options)
            } else {
                enc.encode_field_with_type_and_format(&pg_interval::Interval::new(months, days, micros), ty, format, options)
            }
        }
        DataType::List(_) => {
            let items = col.as_list::<i32>().value(row);
            encode_array(enc, &items, format)
        }
        other => {
            // Unreachable by construction (canonical() maps everything else to Utf8); say so
            // rather than send a wrong value.
            Err(pgwire::error::PgWireError::ApiError(format!("cannot encode {other}").into()))
        }
    }
}


#[cfg(test)]
mod tests {
    use super::float_text;

    #[test]
    fn pg_typeof_names_the_type_a_value_is_sent_as() {
        use datafusion::arrow::datatypes::{DataType::*, Field, TimeUnit};
        let list = |t| List(std::sync::Arc::new(Field::new("item", t, true)));
        for t in [
            Boolean, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64, Float32, Float64, Decimal128(12, 2), Utf8, Utf8View,
            LargeUtf8, Binary, Date32, Timestamp(TimeUnit::Nanosecond, None), Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Time64(TimeUnit::Microsecond), list(Int32), list(Utf8), list(Float64), list(Date32),
        ] {
            assert_eq!(crate::pg::functions::type_oid(&t), super::canonical(&t).1.oid() as i64, "{t}");
        }
    }

    #[test]
    fn intervals_print_as_postgresql_prints_them() {
        use super::interval_text as t;
        assert_eq!(t(0, 1, 7_200_000_000), "1 day 02:00:00");
        assert_eq!(t(3, 0, 0), "3 mons");
        assert_eq!(t(14, 0, 0), "1 year 2 mons");
        assert_eq!(t(0, -1, 0), "-1 days");
        assert_eq!(t(0, 0, 1_500_000), "00:00:01.5");
        assert_eq!(t(0, 0, 0), "00:00:00");
        assert_eq!(t(0, 1, -7_200_000_000), "1 day -02:00:00");
        assert_eq!(t(0, 729, 43_200_000_000), "729 days 12:00:00");
    }

    #[test]
    fn text_forms_match_the_general_formatters() {
        use super::TextBuf;
        for v in [0i64, 7, -7, 1_234_567, i64::MAX, i64::MIN] {
            assert_eq!(TextBuf::new().int(v), v.to_string());
        }
        for (v, s, text) in [
            (1250i128, 2u32, "12.50"),
            (-5, 3, "-0.005"),
            (0, 2, "0.00"),
            (42, 0, "42"),
            (i128::MAX, 38, "1.70141183460469231731687303715884105727"),
            (i128::MIN + 1, 0, "-170141183460469231731687303715884105727"),
        ] {
            assert_eq!(TextBuf::new().decimal(v, s), text);
        }
        // Every day from 1900 to 2100, and around the edges of the years written this way.
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        for days in (-25_567..47_482).chain([-719_162, 2_932_896]) {
            let d = epoch + chrono::Duration::days(days);
            assert_eq!(TextBuf::new().date(days as i32), Some(d.to_string()).as_deref(), "{days}");
        }
        assert_eq!(TextBuf::new().date(-719_163), None, "year 0 is 1 BC");
        assert_eq!(TextBuf::new().date(2_932_897), None, "year 10000");
        for (us, text) in [
            (0i64, "1970-01-01 00:00:00"),
            (1_742_034_615_500_000, "2025-03-15 10:30:15.5"),
            (1_742_034_615_000_001, "2025-03-15 10:30:15.000001"),
            (-1, "1969-12-31 23:59:59.999999"),
        ] {
            assert_eq!(TextBuf::new().timestamp(us, false), Some(text));
            assert_eq!(TextBuf::new().timestamp(us, true).map(String::from), Some(format!("{text}+00")));
        }
    }

    #[test]
    fn floats_print_as_postgresql_prints_them() {
        let f = |v: f64| float_text(v, 15, v.to_string());
        assert_eq!(f(1714640400.0), "1714640400");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(0.23929518851758783), "0.23929518851758783");
        assert_eq!(f(1e300), "1e+300");
        assert_eq!(f(1.5e-5), "1.5e-05");
        assert_eq!(f(123456789012345680.0), "1.2345678901234568e+17");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(float_text(3.25f32 as f64, 6, 3.25f32.to_string()), "3.25");
    }
}

/// Turns a lakecube error into a PostgreSQL ErrorResponse.
pub fn to_pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

/// A lakecube error as the fields of an ErrorResponse.
pub fn error_info(e: Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.message);
    info.hint = e.hint;
    info.position = e.position.map(|p| p.to_string());
    info
}
