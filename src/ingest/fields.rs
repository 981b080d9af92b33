//! A file's headers matched to its kind's fields ([`super::kinds`]: the built-in aliases,
//! then the source's), personal-data headers, and how values are read: integers, decimals with
//! a point or a comma, date-times in the common forms and as Excel serial numbers.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use unicode_normalization::UnicodeNormalization;

use super::kinds::{FieldType, Kind, fields_of};
use super::record::Fields;
use super::source::FieldMapping;
use crate::error::{Error, Result};

/// A header as matched: accents removed, lower case, every run of non-alphanumerics one space
/// (`Entrées`, ` ENTREES `, `entrées_` all read `entrees`).
pub fn normalize(header: &str) -> String {
    let folded: String = header.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect::<String>().to_lowercase();
    folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Words of a header that holds personal data: customer names, e-mails, phone numbers,
/// addresses (English and French). Such a column never reaches the lake (no field reads it)
/// and is masked in the rejects file.
const PII_WORDS: &[&str] = &[
    "email", "mail", "courriel", "phone", "telephone", "tel", "mobile", "portable", "gsm", "address", "adresse", "street", "rue", "zip",
    "postcode", "postal", "customer", "client", "name", "nom", "prenom", "firstname", "lastname", "surname", "birth", "naissance", "iban",
];

/// Whether a header names personal data (see [`PII_WORDS`]).
pub fn is_pii_header(header: &str) -> bool {
    let n = normalize(header);
    n.split(' ').any(|w| PII_WORDS.contains(&w)) || n.contains("e mail")
}

/// Whether a value looks like an e-mail address (masked wherever it appears in a reject).
pub fn looks_like_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((user, domain)) => !user.trim().is_empty() && domain.contains('.') && !domain.contains(' '),
        None => false,
    }
}

/// Where a field's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// The column at this index.
    At(usize),
    /// The source's `constant:` (an export of one store, without a store column).
    Constant(String),
    /// Not in the file (an optional field).
    Missing,
    /// The source's `expression:`, computed into this index, past the file's own columns
    /// (see [`super::expr`]).
    Computed(usize),
}

/// Where each field's values come from: `columns[i]` for `fields_of(kind)[i]`.
#[derive(Debug)]
pub struct HeaderMap {
    pub columns: Vec<Column>,
}

impl HeaderMap {
    /// Field `i`'s value in a record, trimmed; `None` when absent or blank.
    pub fn value<'r>(&'r self, i: usize, fields: &'r dyn Fields) -> Option<&'r str> {
        let v = match &self.columns[i] {
            Column::At(c) | Column::Computed(c) => fields.get(*c)?,
            Column::Constant(v) => v.as_str(),
            Column::Missing => return None,
        };
        let v = v.trim().trim_matches('\u{feff}');
        (!v.is_empty()).then_some(v)
    }
}

/// The fields a source maps by an expression, with their SQL, in field order (the order of
/// their [`Column::Computed`] indices).
pub fn expressions<'m>(kind: Kind, mapping: &'m std::collections::BTreeMap<String, FieldMapping>) -> Vec<(&'static str, &'m str)> {
    fields_of(kind).iter().filter_map(|f| Some((f.name, mapping.get(f.name)?.expression.as_deref()?))).collect()
}

/// Matches a file's headers to a kind's fields (the source's constant, else the source's
/// aliases, the field's own name, its built-in aliases). A required field with no header is an
/// error listing what was found, what was expected and the closest header.
pub fn map_headers(kind: Kind, headers: &[String], mapping: &std::collections::BTreeMap<String, FieldMapping>, file: &str) -> Result<HeaderMap> {
    let normalized: Vec<String> = headers.iter().map(|h| normalize(h)).collect();
    let mut columns = Vec::new();
    let mut taken: Vec<usize> = Vec::new();
    let mut computed = headers.len();
    for f in fields_of(kind) {
        if mapping.get(f.name).is_some_and(|m| m.expression.is_some()) {
            columns.push(Column::Computed(computed));
            computed += 1;
            continue;
        }
        if let Some(c) = mapping.get(f.name).and_then(|m| m.constant.clone()) {
            columns.push(Column::Constant(c));
            continue;
        }
        let extra = mapping.get(f.name).map(|m| m.aliases.as_slice()).unwrap_or(&[]);
        // The source's own aliases first: they say which of two candidate columns is meant.
        let wanted: Vec<String> = extra
            .iter()
            .map(|a| normalize(a))
            .chain(std::iter::once(normalize(f.name)))
            .chain(f.aliases.iter().map(|a| normalize(a)))
            .collect();
        let found = wanted.iter().find_map(|w| normalized.iter().enumerate().position(|(i, h)| h == w && !taken.contains(&i)));
        if let Some(i) = found {
            taken.push(i);
        } else if f.required {
            let expected: Vec<&str> = std::iter::once(f.name).chain(extra.iter().map(String::as_str)).chain(f.aliases.iter().copied()).collect();
            let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let hint = match crate::error::closest(f.name, &header_refs).or_else(|| expected.iter().find_map(|e| crate::error::closest(e, &header_refs))) {
                Some(c) => format!("{} If so, add it under `mapping: {{{}: {{aliases: [\"{c}\"]}}}}`", crate::error::did_you_mean_hint(c), f.name),
                None => format!(
                    "add the column's header under `mapping: {{{}: {{aliases: [...]}}}}`, or a fixed value with `mapping: {{{}: {{constant: ...}}}}`",
                    f.name, f.name
                ),
            };
            return Err(Error::new(
                crate::error::ErrorKind::Config,
                format!(
                    "{file}: no column for `{}` (a {} source needs it). Headers found: {}. Accepted for `{}`: {}",
                    f.name,
                    kind.name(),
                    headers.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", "),
                    f.name,
                    expected.join(", ")
                ),
            )
            .with_hint(hint));
        }
        columns.push(found.map(Column::At).unwrap_or(Column::Missing));
    }
    Ok(HeaderMap { columns })
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Decimal(Decimal),
    Timestamp(NaiveDateTime),
    Date(NaiveDate),
}

impl Value {
    /// The value as the lake's text form of its column (dates as `YYYY-MM-DD`).
    pub fn to_text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::Timestamp(t) => t.to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        }
    }
}

/// Reads one raw value as a field's type; the error is the reject reason.
pub fn parse_value(raw: &str, ty: FieldType, format: Option<&str>) -> std::result::Result<Value, String> {
    let s = raw.trim().trim_matches('\u{feff}');
    if s.is_empty() {
        return Err("empty value".into());
    }
    match ty {
        FieldType::Text => Ok(Value::Text(s.to_string())),
        FieldType::Integer => {
            if let Ok(n) = s.parse::<i64>() {
                return Ok(Value::Integer(n));
            }
            let compact: String = s.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}').collect();
            if let Ok(n) = compact.parse::<i64>() {
                return Ok(Value::Integer(n));
            }
            match parse_decimal(&compact) {
                Some(d) if d.fract().is_zero() => i64::try_from(d).map(Value::Integer).map_err(|_| format!("`{s}` is out of range")),
                _ => Err(format!("`{s}` is not a whole number")),
            }
        }
        FieldType::Decimal => parse_decimal(s).map(Value::Decimal).ok_or_else(|| format!("`{s}` is not a number")),
        FieldType::Timestamp => parse_timestamp(s, format).map(Value::Timestamp),
        FieldType::Date => parse_timestamp(s, format).map(|t| Value::Date(t.date())),
    }
}

/// `12.50`, `12,50` (decimal comma), `1 234,50`, `1,234.50`, `1.234,50`.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}' && *c != '\'').collect();
    let (last_dot, last_comma) = (compact.rfind('.'), compact.rfind(','));
    let normalized = match (last_dot, last_comma) {
        (Some(d), Some(c)) if c > d => compact.replace('.', "").replace(',', "."),
        (Some(_), Some(_)) => compact.replace(',', ""),
        (None, Some(_)) if compact.matches(',').count() == 1 => compact.replace(',', "."),
        (None, Some(_)) => return None,
        _ => compact,
    };
    normalized.parse::<Decimal>().ok()
}

const TIME_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
];

/// A local date-time: with `format`, that chrono format only; else ISO 8601 (`T` or space,
/// optional seconds and fraction, a trailing `Z` or offset dropped as the stores' local time is
/// what counts), European day-first forms (`01/10/2014 00:02`), a bare date (`2014-10-01`,
/// `01/10/2014`: midnight), or an
/// Excel serial number (`41913.0014`, days since 1899-12-30).
pub fn parse_timestamp(s: &str, format: Option<&str>) -> std::result::Result<NaiveDateTime, String> {
    TimeParser::new(format).parse(s)
}

/// [`parse_timestamp`] for a column: the form that read the last value is tried first, as an
/// export writes all its dates one way.
#[derive(Debug, Clone)]
pub struct TimeParser {
    format: Option<String>,
    last: usize,
}

impl TimeParser {
    pub fn new(format: Option<&str>) -> TimeParser {
        TimeParser { format: format.map(str::to_string), last: 0 }
    }

    pub fn parse(&mut self, s: &str) -> std::result::Result<NaiveDateTime, String> {
        if let Some(f) = &self.format {
            return NaiveDateTime::parse_from_str(s, f)
                .or_else(|_| NaiveDate::parse_from_str(s, f).map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
                .map_err(|e| format!("`{s}` does not match the format `{f}`: {e}"));
        }
        let local = s.trim_end_matches('Z');
        let local = match local.get(19..).and_then(|tail| tail.find(['+', '-'])) {
            Some(i) => &local[..19 + i],
            None => local,
        };
        if let Some(t) = fixed_width_timestamp(local.as_bytes()) {
            return Ok(t);
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(local, TIME_FORMATS[self.last]) {
            return Ok(t);
        }
        for (i, f) in TIME_FORMATS.iter().enumerate() {
            if let Ok(t) = NaiveDateTime::parse_from_str(local, f) {
                self.last = i;
                return Ok(t);
            }
        }
        for f in ["%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"] {
            if let Ok(d) = NaiveDate::parse_from_str(local, f) {
                return Ok(d.and_hms_opt(0, 0, 0).expect("midnight"));
            }
        }
        if let Ok(serial) = s.replace(',', ".").parse::<f64>()
            && (1.0..2_958_466.0).contains(&serial)
        {
            let base = NaiveDate::from_ymd_opt(1899, 12, 30).expect("Excel's epoch").and_hms_opt(0, 0, 0).expect("midnight");
            let millis = (serial * 86_400_000.0).round() as i64;
            return Ok(base + chrono::Duration::milliseconds(millis));
        }
        Err(format!("`{s}` is not a date and time this source understands; set `mapping: {{<field>: {{format: \"%d/%m/%Y %H:%M\"}}}}`"))
    }
}

/// The fixed-width forms most exports write, read without chrono's format interpreter (which
/// was a sixth of ingest time): `YYYY-MM-DD HH:MM[:SS]` (or `T`) and `DD/MM/YYYY HH:MM[:SS]`
/// (or `-`, `.`). Same result as the matching [`TIME_FORMATS`] entry; `None` for anything else.
fn fixed_width_timestamp(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 16 && b.len() != 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32))
    };
    let (y, m, d) = if b[4] == b'-' && b[7] == b'-' && (b[10] == b' ' || b[10] == b'T') {
        (num(0..4)?, num(5..7)?, num(8..10)?)
    } else if matches!(b[2], b'/' | b'-' | b'.') && b[5] == b[2] && b[10] == b' ' {
        (num(6..10)?, num(3..5)?, num(0..2)?)
    } else {
        return None;
    };
    if b[13] != b':' || (b.len() == 19 && b[16] != b':') {
        return None;
    }
    let sec = if b.len() == 19 { num(17..19)? } else { 0 };
    NaiveDate::from_ymd_opt(y as i32, m, d)?.and_hms_opt(num(11..13)?, num(14..16)?, sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_whatever_case_accents_and_spacing() {
        assert_eq!(normalize(" Entrées "), "entrees");
        assert_eq!(normalize("Code_Magasin"), "code magasin");
        assert_eq!(normalize("Date/Heure"), "date heure");
        let headers: Vec<String> = ["Magasin", "Rayon", "Début", "Entrées", "Sorties"].iter().map(|s| s.to_string()).collect();
        let m = map_headers(Kind::SensorCounts, &headers, &Default::default(), "f.csv").unwrap();
        assert_eq!(m.columns, (0..5).map(Column::At).collect::<Vec<_>>());
        let headers: Vec<String> = ["shop", "zone", "when", "in"].iter().map(|s| s.to_string()).collect();
        let e = map_headers(Kind::SensorCounts, &headers, &Default::default(), "f.csv").unwrap_err();
        assert!(e.message.contains("no column for `interval_start`") && e.message.contains("`when`"), "{}", e.message);
        assert!(e.hint.unwrap().contains("aliases"));
    }

    #[test]
    fn values_read_as_exports_write_them() {
        assert_eq!(parse_decimal("12,50"), Some(Decimal::new(1250, 2)));
        assert_eq!(parse_decimal("1 234,50"), Some(Decimal::new(123450, 2)));
        assert_eq!(parse_decimal("1,234.50"), Some(Decimal::new(123450, 2)));
        assert_eq!(parse_decimal("1.234,50"), Some(Decimal::new(123450, 2)));
        assert_eq!(parse_decimal("abc"), None);
        let t = |s: &str| parse_timestamp(s, None).unwrap().to_string();
        assert_eq!(t("01/10/2014 00:02"), "2014-10-01 00:02:00");
        assert_eq!(t("2014-10-01T00:02:00"), "2014-10-01 00:02:00");
        assert_eq!(t("2014-10-01T00:02:00+02:00"), "2014-10-01 00:02:00");
        assert_eq!(t("41913.5"), "2014-10-01 12:00:00");
        assert!(parse_timestamp("31/02/2014 10:00", None).is_err());
        assert!(parse_timestamp("2014-10-01 24:00", None).is_err());
        // The fixed-width fast path reads what chrono's formats read.
        for s in ["2014-10-01 00:02", "2014-10-01T23:59:59", "01/10/2014 00:02", "01.10.2014 13:45:10", "01-10-2014 13:45"] {
            let slow = TIME_FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok());
            assert_eq!(fixed_width_timestamp(s.as_bytes()), slow, "{s}");
        }
        assert_eq!(parse_value("12.0", FieldType::Integer, None), Ok(Value::Integer(12)));
        assert!(parse_value("12.5", FieldType::Integer, None).is_err());
        assert!(parse_value(" ", FieldType::Text, None).is_err());
    }
}
