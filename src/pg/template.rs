//! PostgreSQL's formatting templates, as `to_char`, `to_date`, `to_timestamp` and `to_number`
//! read them (PostgreSQL 15 manual §9.8): `YYYY-MM-DD`, `FMMonth`, `HH12:MI AM`, `"Q"Q`,
//! `9,999.99`, `FM990.0`, `S9999`, `99G999D9S`…
//!
//! Written here rather than translated to chrono's strftime (as lakecube did before): strftime
//! has no blank-padded month and day names (`Month` is `March    `), no quarter, no ordinal
//! suffixes, no `Y,YYY`, and no number templates at all; DataFusion's `to_char` takes chrono
//! patterns and has no number form. No crate implements PostgreSQL's templates.
//!
//! Everything here is pure: values in, text (or a value, or an [`Error`]) out.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::error::{Error, ErrorKind};

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const ROMAN_MONTHS: [&str; 12] = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"];

/// How a name is written: `MONTH`, `Month` or `month`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Upper,
    Capital,
    Lower,
}

impl Case {
    fn apply(self, name: &str) -> String {
        match self {
            Case::Upper => name.to_uppercase(),
            Case::Capital => name.to_string(),
            Case::Lower => name.to_lowercase(),
        }
    }
}

/// One field of a datetime template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Hour24,
    Hour12,
    Minute,
    Second,
    Milli,
    Micro,
    /// `FF1`…`FF6`: that many digits of the fraction of a second.
    Fraction(u8),
    SecondsOfDay,
    Meridiem { upper: bool, dots: bool },
    Era { upper: bool, dots: bool },
    /// `Y,YYY`.
    YearComma,
    /// `YYYY`, `YYY`, `YY`, `Y`: the last n digits.
    Year(u8),
    IsoYear(u8),
    MonthName(Case),
    MonthAbbr(Case),
    Month,
    RomanMonth { upper: bool },
    DayName(Case),
    DayAbbr(Case),
    DayOfYear,
    IsoDayOfYear,
    Day,
    /// `D`: day of the week, Sunday 1 to Saturday 7.
    Weekday,
    /// `ID`: ISO day of the week, Monday 1 to Sunday 7.
    IsoWeekday,
    WeekOfMonth,
    WeekOfYear,
    IsoWeek,
    Century,
    Julian,
    Quarter,
    Zone { upper: bool },
    ZoneHours,
    ZoneMinutes,
    Offset,
}

/// Fields whose spelling's case is meaningful, matched exactly, before the others.
const CASED: &[(&str, Field)] = &[
    ("A.M.", Field::Meridiem { upper: true, dots: true }),
    ("a.m.", Field::Meridiem { upper: false, dots: true }),
    ("P.M.", Field::Meridiem { upper: true, dots: true }),
    ("p.m.", Field::Meridiem { upper: false, dots: true }),
    ("AM", Field::Meridiem { upper: true, dots: false }),
    ("am", Field::Meridiem { upper: false, dots: false }),
    ("PM", Field::Meridiem { upper: true, dots: false }),
    ("pm", Field::Meridiem { upper: false, dots: false }),
    ("B.C.", Field::Era { upper: true, dots: true }),
    ("b.c.", Field::Era { upper: false, dots: true }),
    ("A.D.", Field::Era { upper: true, dots: true }),
    ("a.d.", Field::Era { upper: false, dots: true }),
    ("BC", Field::Era { upper: true, dots: false }),
    ("bc", Field::Era { upper: false, dots: false }),
    ("AD", Field::Era { upper: true, dots: false }),
    ("ad", Field::Era { upper: false, dots: false }),
    ("MONTH", Field::MonthName(Case::Upper)),
    ("Month", Field::MonthName(Case::Capital)),
    ("month", Field::MonthName(Case::Lower)),
    ("MON", Field::MonthAbbr(Case::Upper)),
    ("Mon", Field::MonthAbbr(Case::Capital)),
    ("mon", Field::MonthAbbr(Case::Lower)),
    ("DAY", Field::DayName(Case::Upper)),
    ("Day", Field::DayName(Case::Capital)),
    ("day", Field::DayName(Case::Lower)),
    ("DY", Field::DayAbbr(Case::Upper)),
    ("Dy", Field::DayAbbr(Case::Capital)),
    ("dy", Field::DayAbbr(Case::Lower)),
    ("RM", Field::RomanMonth { upper: true }),
    ("rm", Field::RomanMonth { upper: false }),
    ("TZH", Field::ZoneHours),
    ("TZM", Field::ZoneMinutes),
    ("TZ", Field::Zone { upper: true }),
    ("tz", Field::Zone { upper: false }),
    ("OF", Field::Offset),
];

/// Numeric fields, matched in any case, longest first where one is a prefix of another.
const NUMERIC: &[(&str, Field)] = &[
    ("Y,YYY", Field::YearComma),
    ("YYYY", Field::Year(4)),
    ("YYY", Field::Year(3)),
    ("YY", Field::Year(2)),
    ("Y", Field::Year(1)),
    ("IYYY", Field::IsoYear(4)),
    ("IYY", Field::IsoYear(3)),
    ("IDDD", Field::IsoDayOfYear),
    ("ID", Field::IsoWeekday),
    ("IW", Field::IsoWeek),
    ("IY", Field::IsoYear(2)),
    ("I", Field::IsoYear(1)),
    ("HH24", Field::Hour24),
    ("HH12", Field::Hour12),
    ("HH", Field::Hour12),
    ("MI", Field::Minute),
    ("MS", Field::Milli),
    ("MM", Field::Month),
    ("US", Field::Micro),
    ("SSSSS", Field::SecondsOfDay),
    ("SSSS", Field::SecondsOfDay),
    ("SS", Field::Second),
    ("FF1", Field::Fraction(1)),
    ("FF2", Field::Fraction(2)),
    ("FF3", Field::Fraction(3)),
    ("FF4", Field::Fraction(4)),
    ("FF5", Field::Fraction(5)),
    ("FF6", Field::Fraction(6)),
    ("DDD", Field::DayOfYear),
    ("DD", Field::Day),
    ("D", Field::Weekday),
    ("WW", Field::WeekOfYear),
    ("W", Field::WeekOfMonth),
    ("CC", Field::Century),
    ("J", Field::Julian),
    ("Q", Field::Quarter),
];

/// A piece of a datetime template.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// A field, with the `FM` prefix (no padding) and the `TH`/`th` suffix (ordinal).
    Field { field: Field, fill: bool, ordinal: Option<bool> },
    Literal(char),
    /// A character inside double quotes: always literal.
    Quoted(char),
}

fn field_at(rest: &str) -> Option<(Field, usize)> {
    for (pattern, field) in CASED {
        if rest.starts_with(pattern) {
            return Some((*field, pattern.len()));
        }
    }
    for (pattern, field) in NUMERIC {
        if rest.len() >= pattern.len() && rest.is_char_boundary(pattern.len()) && rest[..pattern.len()].eq_ignore_ascii_case(pattern) {
            return Some((*field, pattern.len()));
        }
    }
    None
}

fn has_prefix_ignore_case(rest: &str, prefix: &str) -> bool {
    rest.len() >= prefix.len() && rest.is_char_boundary(prefix.len()) && rest[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A datetime template split into pieces.
fn pieces(template: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut fill = false;
    while let Some(ch) = rest.chars().next() {
        // Modifiers: FM (fill mode: no padding), FX and TM (accepted; output is the same).
        if has_prefix_ignore_case(rest, "FM") {
            fill = true;
            rest = &rest[2..];
            continue;
        }
        if has_prefix_ignore_case(rest, "FX") || has_prefix_ignore_case(rest, "TM") {
            rest = &rest[2..];
            continue;
        }
        if let Some((field, len)) = field_at(rest) {
            rest = &rest[len..];
            let ordinal = if rest.starts_with("TH") {
                Some(true)
            } else if rest.starts_with("th") {
                Some(false)
            } else {
                None
            };
            if ordinal.is_some() {
                rest = &rest[2..];
            }
            out.push(Piece::Field { field, fill, ordinal });
            fill = false;
            continue;
        }
        rest = &rest[ch.len_utf8()..];
        match ch {
            '"' => {
                // Up to the closing quote; a backslash makes the next character literal.
                let mut chars = rest.char_indices();
                let mut end = rest.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                out.push(Piece::Quoted(escaped));
                            }
                        }
                        c => out.push(Piece::Quoted(c)),
                    }
                }
                rest = &rest[end.min(rest.len())..];
            }
            '\\' if rest.starts_with('"') => {
                out.push(Piece::Literal('"'));
                rest = &rest[1..];
            }
            c => out.push(Piece::Literal(c)),
        }
    }
    out
}

/// A datetime's zone, for `TZ`, `TZH`, `TZM` and `OF`: its abbreviation and its offset from
/// UTC in seconds. A timestamp without a zone has none (its `TZ` is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub abbreviation: String,
    pub offset_seconds: i32,
}

fn ordinal_suffix(n: i64, upper: bool) -> &'static str {
    let suffix = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    if upper {
        match suffix {
            "st" => "ST",
            "nd" => "ND",
            "rd" => "RD",
            _ => "TH",
        }
    } else {
        suffix
    }
}

/// A datetime template (`to_char(timestamp, template)`) read once, to format many values (a column's rows).
#[derive(Debug)]
pub struct DateTemplate(Vec<Piece>);

impl DateTemplate {
    pub fn new(template: &str) -> DateTemplate {
        DateTemplate(pieces(template))
    }

    /// `dt` as PostgreSQL prints it with this template.
    pub fn format(&self, dt: NaiveDateTime, zone: Option<&Zone>) -> String {
        let mut out = String::new();
        let date = dt.date();
        // Years before 1 are written as positive years BC (chrono's year 0 is 1 BC).
        let year = if date.year() <= 0 { 1 - date.year() as i64 } else { date.year() as i64 };
        let iso = date.iso_week();
        let iso_year = iso.year() as i64;
        for piece in &self.0 {
            let (field, fill, ordinal) = match *piece {
                Piece::Literal(c) | Piece::Quoted(c) => {
                    out.push(c);
                    continue;
                }
                Piece::Field { field, fill, ordinal } => (field, fill, ordinal),
            };
            // A number and its zero-padded width.
            let number: Option<(i64, usize)> = match field {
                Field::Hour24 => Some((dt.hour() as i64, 2)),
                Field::Hour12 => Some((((dt.hour() + 11) % 12 + 1) as i64, 2)),
                Field::Minute => Some((dt.minute() as i64, 2)),
                Field::Second => Some((dt.second() as i64, 2)),
                Field::Milli => Some(((dt.nanosecond() % 1_000_000_000 / 1_000_000) as i64, 3)),
                Field::Micro => Some(((dt.nanosecond() % 1_000_000_000 / 1_000) as i64, 6)),
                Field::Fraction(n) => {
                    Some(((dt.nanosecond() % 1_000_000_000) as i64 / 10i64.pow(9 - n as u32), n as usize))
                }
                Field::SecondsOfDay => Some((dt.num_seconds_from_midnight() as i64, 0)),
                Field::Year(4) => Some((year, 4)),
                Field::Year(n) => Some((year % 10i64.pow(n as u32), n as usize)),
                Field::IsoYear(4) => Some((iso_year, 4)),
                Field::IsoYear(n) => Some((iso_year.rem_euclid(10i64.pow(n as u32)), n as usize)),
                Field::Month => Some((date.month() as i64, 2)),
                Field::DayOfYear => Some((date.ordinal() as i64, 3)),
                Field::IsoDayOfYear => Some((((iso.week() - 1) * 7 + date.weekday().number_from_monday()) as i64, 3)),
                Field::Day => Some((date.day() as i64, 2)),
                Field::Weekday => Some((date.weekday().number_from_sunday() as i64, 1)),
                Field::IsoWeekday => Some((date.weekday().number_from_monday() as i64, 1)),
                Field::WeekOfMonth => Some((((date.day() - 1) / 7 + 1) as i64, 1)),
                Field::WeekOfYear => Some((((date.ordinal() - 1) / 7 + 1) as i64, 2)),
                Field::IsoWeek => Some((iso.week() as i64, 2)),
                Field::Century => {
                    let century = if date.year() > 0 { (date.year() as i64 - 1) / 100 + 1 } else { -((year - 1) / 100 + 1) };
                    Some((century, 2))
                }
                Field::Julian => Some((date.num_days_from_ce() as i64 + 1_721_425, 0)),
                Field::Quarter => Some((((date.month() - 1) / 3 + 1) as i64, 1)),
                _ => None,
            };
            if let Some((n, width)) = number {
                let text = if fill { n.to_string() } else { format!("{n:0width$}") };
                out.push_str(&text);
                if let Some(upper) = ordinal {
                    out.push_str(ordinal_suffix(n.abs(), upper));
                }
                continue;
            }
            let pad = |name: String, width: usize| if fill { name } else { format!("{name:<width$}") };
            let text = match field {
                Field::YearComma => format!("{},{:03}", year / 1000, year % 1000),
                Field::Meridiem { upper, dots } => {
                    let am = dt.hour() < 12;
                    let t = match (am, dots) {
                        (true, false) => "am",
                        (false, false) => "pm",
                        (true, true) => "a.m.",
                        (false, true) => "p.m.",
                    };
                    if upper { t.to_uppercase() } else { t.to_string() }
                }
                Field::Era { upper, dots } => {
                    let bc = date.year() <= 0;
                    let t = match (bc, dots) {
                        (true, false) => "bc",
                        (false, false) => "ad",
                        (true, true) => "b.c.",
                        (false, true) => "a.d.",
                    };
                    if upper { t.to_uppercase() } else { t.to_string() }
                }
                Field::MonthName(case) => pad(case.apply(MONTHS[date.month0() as usize]), 9),
                Field::MonthAbbr(case) => case.apply(&MONTHS[date.month0() as usize][..3]),
                Field::DayName(case) => pad(case.apply(DAYS[date.weekday().num_days_from_sunday() as usize]), 9),
                Field::DayAbbr(case) => case.apply(&DAYS[date.weekday().num_days_from_sunday() as usize][..3]),
                Field::RomanMonth { upper } => {
                    let r = ROMAN_MONTHS[date.month0() as usize];
                    pad(if upper { r.to_string() } else { r.to_lowercase() }, 4)
                }
                Field::Zone { upper } => match zone {
                    Some(z) if upper => z.abbreviation.to_uppercase(),
                    Some(z) => z.abbreviation.to_lowercase(),
                    None => String::new(),
                },
                Field::ZoneHours => {
                    let s = zone.map_or(0, |z| z.offset_seconds);
                    format!("{}{:02}", if s < 0 { '-' } else { '+' }, s.abs() / 3600)
                }
                Field::ZoneMinutes => format!("{:02}", zone.map_or(0, |z| z.offset_seconds).abs() % 3600 / 60),
                Field::Offset => {
                    let s = zone.map_or(0, |z| z.offset_seconds);
                    let sign = if s < 0 { '-' } else { '+' };
                    let (h, m) = (s.abs() / 3600, s.abs() % 3600 / 60);
                    if m == 0 { format!("{sign}{h:02}") } else { format!("{sign}{h:02}:{m:02}") }
                }
                _ => unreachable!("numeric fields are written above"),
            };
            out.push_str(&text);
        }
        out
    }
}

fn invalid_format(message: String) -> Error {
    Error::new(ErrorKind::InvalidDatetimeFormat, message)
}

fn out_of_range(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::DatetimeOutOfRange, message)
}

/// The fields read from a text by [`parse_datetime`].
#[derive(Default)]
struct Read {
    year: Option<i64>,
    /// The year field's width: `Y`, `YY` and `YYY` read a year near 2020 (`YY` reads 25 as
    /// 2025), `YYYY` reads it as written.
    year_width: u8,
    bc: bool,
    month: Option<u32>,
    day: Option<u32>,
    day_of_year: Option<u32>,
    iso_year: Option<i64>,
    iso_week: Option<u32>,
    iso_weekday: Option<u32>,
    hour: u32,
    twelve_hour: bool,
    pm: Option<bool>,
    minute: u32,
    second: u32,
    nanos: u32,
    julian: Option<i64>,
    offset_seconds: i32,
    /// The zone's sign, apart: `-00` with 30 minutes is half an hour west.
    offset_negative: bool,
}

/// `to_date(text, template)` and `to_timestamp(text, template)`: reads `text` with
/// `template`, as PostgreSQL does without `FX`: spaces are skipped before fields, a separator
/// in the template skips one separator in the text (or none, if the text has a digit or a
/// letter there), numbers may be shorter than their width when a non-digit ends them, names
/// are read in any case, and text after the template's end is ignored. Returns the UTC time
/// read (a zone read with `TZH`/`TZM`/`OF` is taken away).
pub fn parse_datetime(text: &str, template: &str) -> Result<NaiveDateTime, Error> {
    check_template(template)?;
    let mut r = Read::default();
    let mut input = text;
    let pieces = pieces(template);
    for (i, piece) in pieces.iter().enumerate() {
        // A year field followed by another field reads its width only (`YYYYMMDD`).
        let then_field = matches!(pieces.get(i + 1), Some(Piece::Field { .. }));
        match *piece {
            Piece::Literal(c) | Piece::Quoted(c) if c.is_whitespace() => {
                input = input.trim_start();
            }
            Piece::Literal(c) | Piece::Quoted(c) => {
                if let Some(next) = input.chars().next()
                    && (next == c || !next.is_alphanumeric())
                {
                    input = &input[next.len_utf8()..];
                } else if c.is_alphanumeric() {
                    // A letter of the template that is not a field stands for one character.
                    if let Some(next) = input.chars().next() {
                        input = &input[next.len_utf8()..];
                    }
                }
            }
            Piece::Field { field, .. } => {
                input = input.trim_start();
                if input.is_empty() {
                    // A text shorter than its template: the fields not given take their defaults.
                    break;
                }
                input = read_field(&mut r, field, input, then_field)?;
            }
        }
    }
    r.finish(text)
}

/// Reads up to `width` digits (any number with `width` 0, at most 18), unsigned.
fn digits<'a>(input: &'a str, width: usize, what: &str) -> Result<(i64, usize, &'a str), Error> {
    digits_signed(input, width, what, false)
}

/// [`digits`], with a sign first when `signed` (years, zone offsets).
fn digits_signed<'a>(input: &'a str, width: usize, what: &str, signed: bool) -> Result<(i64, usize, &'a str), Error> {
    let (negative, body) = match input.strip_prefix('-') {
        Some(b) if signed => (true, b),
        _ => (false, if signed { input.strip_prefix('+').unwrap_or(input) } else { input }),
    };
    // 18 digits always fit an i64.
    let max = if width == 0 { 18 } else { width.min(18) };
    let len = body.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if len == 0 {
        let shown: String = input.chars().take_while(|c| c.is_alphanumeric()).take(if width == 0 { 10 } else { width }).collect();
        return Err(invalid_format(format!("invalid value \"{shown}\" for \"{what}\""))
            .with_hint("Value must be an integer."));
    }
    let n: i64 = body[..len].parse().map_err(|_| out_of_range(format!("value for \"{what}\" in source string is out of range")))?;
    Ok((if negative { -n } else { n }, len, &body[len..]))
}

/// Reads one of `names` (full or first three letters, any case); returns its index.
fn name<'a>(input: &'a str, names: &[&str], abbreviated: bool, what: &str) -> Result<(usize, &'a str), Error> {
    for (i, n) in names.iter().enumerate() {
        let candidate = if abbreviated { &n[..3] } else { n };
        if has_prefix_ignore_case(input, candidate) {
            return Ok((i, &input[candidate.len()..]));
        }
    }
    let shown: String = input.chars().take_while(|c| c.is_alphabetic() || *c == '.').collect();
    Err(invalid_format(format!("invalid value \"{shown}\" for \"{what}\""))
        .with_hint("The given value did not match any of the allowed values for this field."))
}

fn read_field<'a>(r: &mut Read, field: Field, input: &'a str, then_field: bool) -> Result<&'a str, Error> {
    let open_width = |n: u8| if n == 4 && !then_field { 0 } else { n as usize };
    let num = |width: usize, what: &str| digits(input, width, what);
    Ok(match field {
        Field::Hour24 => {
            let (n, _, rest) = num(2, "HH24")?;
            r.hour = n as u32;
            rest
        }
        Field::Hour12 => {
            let (n, _, rest) = num(2, "HH12")?;
            r.hour = n as u32;
            r.twelve_hour = true;
            rest
        }
        Field::Minute => {
            let (n, _, rest) = num(2, "MI")?;
            r.minute = n as u32;
            rest
        }
        Field::Second => {
            let (n, _, rest) = num(2, "SS")?;
            r.second = n as u32;
            rest
        }
        Field::Milli | Field::Micro | Field::Fraction(_) => {
            let width = match field {
                Field::Milli => 3,
                Field::Micro => 6,
                Field::Fraction(n) => n as usize,
                _ => unreachable!("matched above"),
            };
            let (n, len, rest) = num(width, "MS")?;
            r.nanos = (n as u32) * 10u32.pow(9 - len as u32);
            rest
        }
        Field::SecondsOfDay => {
            let (n, _, rest) = num(0, "SSSS")?;
            r.hour = (n / 3600) as u32;
            r.minute = (n % 3600 / 60) as u32;
            r.second = (n % 60) as u32;
            rest
        }
        Field::Meridiem { dots, .. } => {
            let (am, pm) = if dots { ("a.m.", "p.m.") } else { ("am", "pm") };
            if has_prefix_ignore_case(input, am) {
                r.pm = Some(false);
                &input[am.len()..]
            } else if has_prefix_ignore_case(input, pm) {
                r.pm = Some(true);
                &input[pm.len()..]
            } else {
                let (i, rest) = name(input, &[am, pm], false, "AM")?;
                r.pm = Some(i == 1);
                rest
            }
        }
        Field::Era { dots, .. } => {
            let (bc, ad) = if dots { ("b.c.", "a.d.") } else { ("bc", "ad") };
            let (i, rest) = name(input, &[bc, ad], false, "BC")?;
            r.bc = i == 0;
            rest
        }
        Field::YearComma => {
            let (thousands, _, rest) = num(0, "Y,YYY")?;
            let rest = rest.strip_prefix(',').unwrap_or(rest);
            let (units, _, rest) = digits(rest, 3, "Y,YYY")?;
            r.year = Some(thousands.checked_mul(1000).and_then(|t| t.checked_add(units)).ok_or_else(|| out_of_range("value for \"Y,YYY\" in source string is out of range"))?);
            r.year_width = 4;
            rest
        }
        Field::Year(n) => {
            // YYYY reads more digits when there are (year 10000); the others read theirs.
            let (y, _, rest) = digits_signed(input, open_width(n), "YYYY", true)?;
            r.year = Some(y);
            r.year_width = n;
            rest
        }
        Field::IsoYear(n) => {
            let (y, _, rest) = num(open_width(n), "IYYY")?;
            r.iso_year = Some(y);
            rest
        }
        Field::Month => {
            let (m, _, rest) = num(2, "MM")?;
            r.month = Some(m as u32);
            rest
        }
        Field::MonthName(_) => {
            let (i, rest) = name(input, &MONTHS, false, "Month").or_else(|_| name(input, &MONTHS, true, "Month"))?;
            r.month = Some(i as u32 + 1);
            rest
        }
        Field::MonthAbbr(_) => {
            let (i, rest) = name(input, &MONTHS, true, "Mon")?;
            r.month = Some(i as u32 + 1);
            rest
        }
        Field::RomanMonth { .. } => {
            // Longest numerals first, so VIII is not read as V.
            let mut order: Vec<usize> = (0..12).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(ROMAN_MONTHS[i].len()));
            let found = order.into_iter().find(|&i| has_prefix_ignore_case(input, ROMAN_MONTHS[i]));
            let Some(i) = found else {
                return Err(invalid_format(format!("invalid value \"{}\" for \"RM\"", input.chars().take(4).collect::<String>())));
            };
            r.month = Some(i as u32 + 1);
            &input[ROMAN_MONTHS[i].len()..]
        }
        Field::DayName(_) => {
            let (_, rest) = name(input, &DAYS, false, "Day").or_else(|_| name(input, &DAYS, true, "Day"))?;
            rest
        }
        Field::DayAbbr(_) => name(input, &DAYS, true, "Dy")?.1,
        Field::DayOfYear => {
            let (n, _, rest) = num(3, "DDD")?;
            r.day_of_year = Some(n as u32);
            rest
        }
        Field::IsoDayOfYear => {
            let (n, _, rest) = num(3, "IDDD")?;
            r.iso_week = Some(((n - 1) / 7 + 1) as u32);
            r.iso_weekday = Some(((n - 1) % 7 + 1) as u32);
            rest
        }
        Field::Day => {
            let (n, _, rest) = num(2, "DD")?;
            r.day = Some(n as u32);
            rest
        }
        Field::IsoWeekday => {
            let (n, _, rest) = num(1, "ID")?;
            r.iso_weekday = Some(n as u32);
            rest
        }
        Field::IsoWeek => {
            let (n, _, rest) = num(2, "IW")?;
            r.iso_week = Some(n as u32);
            rest
        }
        // Read and checked as numbers, but PostgreSQL derives nothing from them.
        Field::Weekday | Field::WeekOfMonth | Field::WeekOfYear | Field::Century | Field::Quarter => {
            num(2, "D")?.2
        }
        Field::Julian => {
            let (n, _, rest) = num(0, "J")?;
            r.julian = Some(n);
            rest
        }
        Field::Zone { .. } => {
            return Err(Error::new(ErrorKind::FeatureNotSupported, "formatting field \"TZ\" is only supported in to_char"));
        }
        Field::Offset => {
            return Err(Error::new(ErrorKind::FeatureNotSupported, "formatting field \"OF\" is only supported in to_char"));
        }
        Field::ZoneHours => {
            let (h, _, rest) = digits_signed(input, 2, "TZH", true)?;
            r.offset_negative = input.starts_with('-');
            r.offset_seconds = (h.abs() * 3600) as i32 * if r.offset_negative { -1 } else { 1 };
            rest
        }
        Field::ZoneMinutes => {
            let (m, _, rest) = num(2, "TZM")?;
            let sign = if r.offset_negative { -1 } else { 1 };
            r.offset_seconds += sign * (m as i32) * 60;
            rest
        }
    })
}

impl Read {
    fn finish(self, text: &str) -> Result<NaiveDateTime, Error> {
        let range = || out_of_range(format!("date/time field value out of range: \"{text}\""));
        let date = if let Some(j) = self.julian {
            let days = j.checked_sub(1_721_425).and_then(|d| i32::try_from(d).ok()).ok_or_else(range)?;
            NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(range)?
        } else if let (Some(y), Some(w)) = (self.iso_year.or(self.year), self.iso_week) {
            let y = i32::try_from(y).map_err(|_| range())?;
            let weekday = chrono::Weekday::try_from((self.iso_weekday.unwrap_or(1) as u8 + 6) % 7).map_err(|_| range())?;
            NaiveDate::from_isoywd_opt(y, w, weekday).ok_or_else(range)?
        } else {
            let mut year = self.year.unwrap_or(1);
            // Two- and three-digit years are the ones nearest 2020, as PostgreSQL reads them.
            // PostgreSQL's adjust_partial_year_to_2020, for the short year fields only.
            if self.year_width < 4 {
                year = match year {
                    0..=69 => year + 2000,
                    70..=99 => year + 1900,
                    100..=519 => year + 2000,
                    520..=999 => year + 1000,
                    _ => year,
                };
            }
            if self.bc {
                year = 1i64.checked_sub(year).ok_or_else(range)?;
            }
            let year = i32::try_from(year).map_err(|_| range())?;
            match self.day_of_year {
                Some(d) if self.month.is_none() => NaiveDate::from_yo_opt(year, d).ok_or_else(range)?,
                _ => NaiveDate::from_ymd_opt(year, self.month.unwrap_or(1), self.day.unwrap_or(1)).ok_or_else(range)?,
            }
        };
        let mut hour = self.hour;
        if self.twelve_hour {
            if !(1..=12).contains(&hour) {
                return Err(out_of_range(format!("hour \"{hour}\" is invalid for the 12-hour clock"))
                    .with_hint("Use the 24-hour clock, or give an hour between 1 and 12."));
            }
            hour %= 12;
        }
        if self.pm == Some(true) && hour < 12 {
            hour += 12;
        }
        let time = NaiveTime::from_hms_nano_opt(hour, self.minute, self.second, self.nanos).ok_or_else(range)?;
        NaiveDateTime::new(date, time).checked_sub_signed(chrono::Duration::seconds(self.offset_seconds as i64)).ok_or_else(range)
    }
}

/// A number template (`9,999.99`, `FM990.0`, `S9999`, `99G999D9S`) read once
/// ([`NumberTemplate::parse`]), to format many values.
#[derive(Debug, Default)]
pub struct NumberTemplate {
    items: Vec<NumberItem>,
    /// Digit positions before the decimal point, and after it.
    int_digits: usize,
    frac_digits: usize,
    /// The first integer digit position (0-based) from which leading zeros are printed.
    zero_start: Option<usize>,
    fill: bool,
    /// Whether the template places the sign itself (S, MI, PL, SG, PR).
    signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberItem {
    /// A digit position: `9` or `0`.
    Digit { zero: bool },
    Point,
    Group,
    /// `S`: anchored to the number when before it, else where it stands.
    Sign,
    Minus,
    Plus,
    SignAlways,
    Angle,
    /// `TH`/`th`: the integer part's ordinal suffix.
    Ordinal { upper: bool },
    Literal(char),
}

fn number_template(template: &str) -> Result<NumberTemplate, Error> {
    check_template(template)?;
    let mut t = NumberTemplate::default();
    let mut after_point = false;
    let mut rest = template;
    // Matched in upper case; ASCII upper-casing keeps every byte offset.
    let upper_template = template.to_ascii_uppercase();
    let unsupported = |p: &str| {
        Error::new(ErrorKind::FeatureNotSupported, format!("the number template pattern \"{p}\" is not supported"))
            .with_hint("lakecube's to_char and to_number read 9, 0, . (D), , (G), S, MI, PL, SG, PR, TH and FM.")
    };
    while let Some(ch) = rest.chars().next() {
        let upper = &upper_template[template.len() - rest.len()..];
        let (item, len) = if upper.starts_with("FM") {
            t.fill = true;
            rest = &rest[2..];
            continue;
        } else if upper.starts_with("MI") {
            (NumberItem::Minus, 2)
        } else if upper.starts_with("PL") {
            (NumberItem::Plus, 2)
        } else if upper.starts_with("SG") {
            (NumberItem::SignAlways, 2)
        } else if upper.starts_with("PR") {
            (NumberItem::Angle, 2)
        } else if upper.starts_with("EEEE") {
            return Err(unsupported("EEEE"));
        } else if upper.starts_with("TH") {
            (NumberItem::Ordinal { upper: rest.starts_with("TH") }, 2)
        } else if upper.starts_with("RN") {
            return Err(unsupported(&rest[..2]));
        } else {
            match ch.to_ascii_uppercase() {
                '9' => (NumberItem::Digit { zero: false }, 1),
                '0' => (NumberItem::Digit { zero: true }, 1),
                '.' | 'D' => (NumberItem::Point, 1),
                ',' | 'G' => (NumberItem::Group, 1),
                'S' => (NumberItem::Sign, 1),
                'V' | 'L' => return Err(unsupported(&ch.to_string())),
                '"' => {
                    // Quoted text is literal.
                    let body = &rest[1..];
                    let end = body.find('"').unwrap_or(body.len());
                    t.items.extend(body[..end].chars().map(NumberItem::Literal));
                    rest = body.get(end + 1..).unwrap_or("");
                    continue;
                }
                _ => (NumberItem::Literal(ch), ch.len_utf8()),
            }
        };
        match item {
            NumberItem::Digit { zero } if !after_point => {
                if zero && t.zero_start.is_none() {
                    t.zero_start = Some(t.int_digits);
                }
                t.int_digits += 1;
            }
            NumberItem::Digit { .. } => t.frac_digits += 1,
            NumberItem::Point if after_point => {
                return Err(Error::new(ErrorKind::Syntax, "multiple decimal points"));
            }
            NumberItem::Point => after_point = true,
            NumberItem::Sign | NumberItem::Minus | NumberItem::Plus | NumberItem::SignAlways | NumberItem::Angle => {
                if t.signed {
                    return Err(Error::new(ErrorKind::Syntax, "cannot use \"S\" twice").with_hint("A number template has one sign (S, MI, PL, SG or PR)."));
                }
                t.signed = true;
            }
            _ => {}
        }
        t.items.push(item);
        rest = &rest[len..];
    }
    if t.frac_digits > MAX_DECIMALS {
        return Err(Error::new(ErrorKind::FeatureNotSupported, format!("a number template with {} decimal places", t.frac_digits))
            .with_hint(format!("lakecube's numeric holds at most {MAX_DECIMALS} decimal places.")));
    }
    Ok(t)
}

/// The most decimal places a number template may have (lakecube's numeric holds 38 digits).
const MAX_DECIMALS: usize = 38;

/// The longest template lakecube reads, in bytes: each row's text is at most a few times
/// longer, so a batch of rows stays far from Arrow's 2 GiB per column (and the work per row
/// bounded).
pub const MAX_TEMPLATE: usize = 4096;

/// Refuses a template longer than [`MAX_TEMPLATE`] (54000, as PostgreSQL's limits are).
pub fn check_template(template: &str) -> Result<(), Error> {
    if template.len() > MAX_TEMPLATE {
        return Err(Error::new(ErrorKind::ProgramLimitExceeded, format!("formatting template too long: {} bytes", template.len()))
            .with_hint(format!("A template holds at most {MAX_TEMPLATE} bytes.")));
    }
    Ok(())
}

/// A number as its sign and decimal digits: `int` without leading zeros (empty for a zero
/// integer part), `frac` exactly as long as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digits {
    pub negative: bool,
    pub int: String,
    pub frac: String,
}

impl Digits {
    /// An exact decimal `value × 10^-scale` rounded half away from zero to `frac` decimals.
    pub fn from_decimal(value: i128, scale: i8, frac: usize) -> Digits {
        let negative = value < 0;
        let mut magnitude = value.unsigned_abs();
        let mut scale = scale as i64;
        // A negative scale is a multiple of a power of ten.
        while scale < 0 {
            magnitude = magnitude.saturating_mul(10);
            scale += 1;
        }
        let frac = frac as i64;
        if scale > frac {
            let divisor = 10u128.pow((scale - frac).min(38) as u32);
            let (q, rem) = (magnitude / divisor, magnitude % divisor);
            magnitude = q + u128::from(rem * 2 >= divisor);
        } else {
            // Shift as text: the value may not fit once more digits are added.
        }
        let text = magnitude.to_string();
        let kept_scale = scale.min(frac) as usize;
        let (int, f) = if text.len() > kept_scale {
            (text[..text.len() - kept_scale].to_string(), text[text.len() - kept_scale..].to_string())
        } else {
            (String::new(), format!("{text:0>kept_scale$}"))
        };
        let int = int.trim_start_matches('0').to_string();
        let frac_text = format!("{f:0<width$}", width = frac as usize);
        let zero = int.is_empty() && frac_text.bytes().all(|b| b == b'0');
        Digits { negative: negative && !zero, int, frac: frac_text }
    }

    /// A float rounded to `frac` decimals as C's `printf("%.*f")` does (PostgreSQL's float
    /// `to_char`), with at most 15 significant digits (fewer decimals then); `None` for NaN
    /// and infinities.
    pub fn from_float(value: f64, frac: usize) -> Option<Digits> {
        if !value.is_finite() {
            return None;
        }
        // As PostgreSQL's float8 to_char: at most DBL_DIG (15) significant digits.
        let int_len = format!("{:.0}", value.abs()).len();
        let shown = if int_len >= 15 { 0 } else { frac.min(15 - int_len) };
        let text = format!("{:.*}", shown, value.abs());
        let (int, f) = text.split_once('.').unwrap_or((&text, ""));
        let int = int.trim_start_matches('0').to_string();
        let zero = int.is_empty() && f.bytes().all(|b| b == b'0');
        Some(Digits { negative: value.is_sign_negative() && !zero, int, frac: f.to_string() })
    }
}

impl NumberTemplate {
    /// Reads a number template.
    pub fn parse(template: &str) -> Result<NumberTemplate, Error> {
        number_template(template)
    }

    /// How many decimals it prints: a number is rounded to them before [`Self::format`].
    pub fn decimals(&self) -> usize {
        self.frac_digits
    }

    /// `digits` (rounded to [`Self::decimals`]) as PostgreSQL prints them.
    pub fn format(&self, digits: &Digits) -> Result<String, Error> {
        let t = self;
        // A zero integer part is written `0` when no decimals follow it (`to_char(0, '9999')` is
        // `    0`), as PostgreSQL does; with decimals it is left blank (`    .50`).
        let zero_int;
        let digits = if digits.int.is_empty() && t.frac_digits == 0 && t.int_digits > 0 {
            zero_int = Digits { negative: digits.negative, int: "0".to_string(), frac: digits.frac.clone() };
            &zero_int
        } else {
            digits
        };
        let overflow = digits.int.len() > t.int_digits;
        let mut out = String::new();
        let mut int_pos = 0;
        let mut frac_pos = 0;
        let mut printed_digit = false;
        let mut sign_done = false;
        let mut after_point = false;
        // The sign PostgreSQL puts right before the number: `-`, or a blank for a positive one
        // (none in fill mode); `S` before the number puts `+` there; `PR` puts `<`.
        let anchored_sign = |items: &[NumberItem]| -> Option<String> {
            let first_digit = items.iter().position(|i| matches!(i, NumberItem::Digit { .. } | NumberItem::Point));
            let sign_at = items.iter().position(|i| matches!(i, NumberItem::Sign));
            match sign_at {
                Some(s) if first_digit.is_none_or(|d| s < d) => Some(if digits.negative { "-" } else { "+" }.to_string()),
                Some(_) => None,
                None if items.contains(&NumberItem::Angle) => Some(if digits.negative { "<" } else if t.fill { "" } else { " " }.to_string()),
                None if t.signed => None,
                None => Some(if digits.negative { "-" } else if t.fill { "" } else { " " }.to_string()),
            }
        };
        let lead_sign = anchored_sign(&t.items);
        for item in &t.items {
            match *item {
                NumberItem::Digit { .. } if !after_point => {
                    let leading = t.int_digits - int_pos > digits.int.len();
                    let shows = !leading || t.zero_start.is_some_and(|z| int_pos >= z);
                    if overflow {
                        if !sign_done && let Some(s) = &lead_sign {
                            out.push_str(s);
                            sign_done = true;
                        }
                        out.push('#');
                    } else if shows {
                        if !sign_done && let Some(s) = &lead_sign {
                            out.push_str(s);
                            sign_done = true;
                        }
                        let d = if leading { '0' } else { digits.int.as_bytes()[digits.int.len() - (t.int_digits - int_pos)] as char };
                        out.push(d);
                        printed_digit = true;
                    } else if !t.fill {
                        out.push(' ');
                    }
                    int_pos += 1;
                }
                NumberItem::Digit { zero } => {
                    if overflow {
                        out.push('#');
                    } else if let Some(&d) = digits.frac.as_bytes().get(frac_pos) {
                        // (A float has fewer decimals than the template when its 15 significant
                        // digits run out: the positions past them print nothing, as in PostgreSQL.)
                        // Fill mode drops trailing zeros of 9 positions (marked for trimming).
                        out.push(if t.fill && !zero && d == b'0' { '\u{0}' } else { d as char });
                    }
                    frac_pos += 1;
                }
                NumberItem::Point => {
                    if !sign_done && let Some(s) = &lead_sign {
                        out.push_str(s);
                        sign_done = true;
                    }
                    after_point = true;
                    out.push('.');
                }
                NumberItem::Group => {
                    if printed_digit || overflow {
                        out.push(',');
                    } else if !t.fill {
                        out.push(' ');
                    }
                }
                NumberItem::Sign => {
                    if lead_sign.is_none() {
                        out.push(if digits.negative { '-' } else { '+' });
                    }
                }
                NumberItem::Minus => out.push_str(if digits.negative { "-" } else if t.fill { "" } else { " " }),
                NumberItem::Plus => out.push_str(if digits.negative { if t.fill { "" } else { " " } } else { "+" }),
                NumberItem::SignAlways => out.push(if digits.negative { '-' } else { '+' }),
                NumberItem::Angle => out.push_str(if digits.negative { ">" } else if t.fill { "" } else { " " }),
                NumberItem::Ordinal { upper } => {
                    let tail = &digits.int[digits.int.len().saturating_sub(2)..];
                    out.push_str(ordinal_suffix(tail.parse().unwrap_or(0), upper));
                }
                NumberItem::Literal(c) => out.push(c),
            }
        }
        if !sign_done && let Some(s) = &lead_sign {
            // A template without digit positions or point: the sign leads.
            out.insert_str(0, s);
        }
        // Fill mode: trailing zeros of 9 positions after the point go (the point stays); a
        // marked zero with a digit after it is a zero.
        if out.contains('\u{0}') {
            let last_digit = out.rfind(|c: char| c.is_ascii_digit() || c == '.');
            out = out
                .char_indices()
                .filter_map(|(i, c)| match c {
                    '\u{0}' if last_digit.is_some_and(|l| i < l) => Some('0'),
                    '\u{0}' => None,
                    c => Some(c),
                })
                .collect();
        }
        // Fill mode writes a zero as `0.`, not a bare point (PostgreSQL's last_relevant rule).
        if t.fill && digits.int.is_empty() && out.trim_start_matches(['-', '+', '<']).starts_with('.')
            && !out.bytes().any(|b| b.is_ascii_digit())
        {
            let point = out.find('.').expect("checked above");
            out.insert(point, '0');
        }
        Ok(out)
    }
}

/// `to_number(text, template)`: the number `text` holds, read position by position with
/// `template` (group separators, blanks and literals skipped, a sign read where the text has
/// one), as an exact decimal with the template's decimals: `(value, scale)`.
pub fn parse_number(text: &str, template: &str) -> Result<(i128, i8), Error> {
    let t = number_template(template)?;
    let mut input = text.trim_start();
    let mut negative = false;
    // PR: a negative number is in angle brackets, the first of them before the digits.
    if t.items.contains(&NumberItem::Angle) && let Some(rest) = input.strip_prefix('<') {
        negative = true;
        input = rest;
    }
    let mut int = String::new();
    let mut frac = String::new();
    let mut after_point = false;
    let take_sign = |input: &mut &str, negative: &mut bool| {
        if let Some(rest) = input.strip_prefix('-') {
            *negative = true;
            *input = rest;
            true
        } else if let Some(rest) = input.strip_prefix('+') {
            *input = rest;
            true
        } else {
            false
        }
    };
    for item in &t.items {
        match item {
            NumberItem::Digit { .. } => {
                while input.starts_with(' ') && int.is_empty() && !after_point {
                    input = &input[1..];
                }
                take_sign(&mut input, &mut negative);
                if let Some(d) = input.chars().next().filter(char::is_ascii_digit) {
                    if after_point { frac.push(d) } else { int.push(d) }
                    input = &input[1..];
                }
            }
            NumberItem::Point => {
                after_point = true;
                if let Some(rest) = input.strip_prefix('.') {
                    input = rest;
                }
            }
            NumberItem::Group => {
                if let Some(rest) = input.strip_prefix(',') {
                    input = rest;
                }
            }
            NumberItem::Sign | NumberItem::Minus | NumberItem::Plus | NumberItem::SignAlways => {
                input = input.trim_start_matches(' ');
                take_sign(&mut input, &mut negative);
            }
            NumberItem::Angle => {
                if let Some(rest) = input.strip_prefix('<') {
                    negative = true;
                    input = rest;
                } else if let Some(rest) = input.strip_prefix('>') {
                    input = rest;
                }
            }
            NumberItem::Ordinal { .. } => {
                input = input.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            }
            NumberItem::Literal(_) => {
                if let Some(c) = input.chars().next() {
                    input = &input[c.len_utf8()..];
                }
            }
        }
    }
    if int.is_empty() && frac.is_empty() {
        return Err(Error::new(ErrorKind::InvalidTextRepresentation, format!("invalid input syntax for type numeric: \"{text}\"")));
    }
    let scale = t.frac_digits;
    let digits = format!("{int}{frac:0<scale$}");
    let value: i128 = if digits.is_empty() { 0 } else {
        digits.parse().map_err(|_| Error::new(ErrorKind::NumericValueOutOfRange, "numeric field overflow"))?
    };
    Ok((if negative { -value } else { value }, scale as i8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("test time")
    }

    fn dt(template: &str) -> String {
        DateTemplate::new(template).format(at("2025-03-05 14:07:09.5"), None)
    }

    #[test]
    fn datetime_fields_as_postgresql_prints_them() {
        assert_eq!(dt("YYYY-MM-DD HH24:MI:SS"), "2025-03-05 14:07:09");
        assert_eq!(dt("DD/MM/YYYY"), "05/03/2025");
        assert_eq!(dt("Mon YYYY"), "Mar 2025");
        assert_eq!(dt("HH12:MI AM"), "02:07 PM");
        assert_eq!(dt("[Month]"), "[March    ]");
        assert_eq!(dt("FMMonth"), "March");
        assert_eq!(dt("MONTH DAY"), "MARCH     WEDNESDAY");
        assert_eq!(dt("Dy dy DY"), "Wed wed WED");
        assert_eq!(dt("YYYY\"Q\"Q"), "2025Q1");
        assert_eq!(dt("\"Week\" IW, D, ID"), "Week 10, 4, 3");
        assert_eq!(dt("FMDDth \"of\" FMMonth"), "5th of March");
        assert_eq!(dt("DDD WW W CC J"), "064 10 1 21 2460740");
        assert_eq!(dt("MS US FF2 SSSS"), "500 500000 50 50829");
        assert_eq!(dt("Y,YYY YYY YY Y rm"), "2,025 025 25 5 iii ");
        assert_eq!(dt("yyyy-mm-dd hh24"), "2025-03-05 14");
        assert_eq!(dt("100% a.m."), "100% p.m.");
        assert_eq!(dt("TZ OF"), " +00");
        let utc = Zone { abbreviation: "UTC".into(), offset_seconds: 0 };
        assert_eq!(DateTemplate::new("TZ").format(at("2025-03-05 00:00:00"), Some(&utc)), "UTC");
        assert_eq!(DateTemplate::new("HH12 AM").format(at("2025-03-05 00:30:00"), None), "12 AM");
    }

    #[test]
    fn datetimes_read_with_postgresql_templates() {
        let read = |t: &str, f: &str| parse_datetime(t, f).map(|d| d.to_string()).unwrap_or_else(|e| format!("[{}] {}", e.sqlstate(), e.message));
        assert_eq!(read("2025-03-05", "YYYY-MM-DD"), "2025-03-05 00:00:00");
        assert_eq!(read("2025-03-05 14:07", "YYYY-MM-DD HH24:MI"), "2025-03-05 14:07:00");
        assert_eq!(read("05 Mar 2025", "DD Mon YYYY"), "2025-03-05 00:00:00");
        assert_eq!(read("March 5, 2025", "Month DD, YYYY"), "2025-03-05 00:00:00");
        assert_eq!(read("20250305", "YYYYMMDD"), "2025-03-05 00:00:00");
        assert_eq!(read("5/3/25 2:07 pm", "DD/MM/YY HH:MI AM"), "2025-03-05 14:07:00");
        assert_eq!(read("2025-064", "YYYY-DDD"), "2025-03-05 00:00:00");
        assert_eq!(read("2025", "YYYY-MM-DD"), "2025-01-01 00:00:00");
        assert_eq!(read("2025-03-05 14:07:09.25", "YYYY-MM-DD HH24:MI:SS.MS"), "2025-03-05 14:07:09.250");
        assert_eq!(read("2025-03-05 14:00 +02", "YYYY-MM-DD HH24:MI TZH"), "2025-03-05 12:00:00");
        assert_eq!(read("2025-02-30", "YYYY-MM-DD"), "[22008] date/time field value out of range: \"2025-02-30\"");
        assert_eq!(read("x025-03-05", "YYYY-MM-DD"), "[22007] invalid value \"x025\" for \"YYYY\"");
        assert_eq!(read("Foo 2025", "Mon YYYY"), "[22007] invalid value \"Foo\" for \"Mon\"");
        assert_eq!(read("13 pm", "HH12 AM").split(']').next(), Some("[22008"));
        // Short year fields read the year nearest 2020; YYYY reads it as written.
        assert_eq!(read("01/01/15", "DD/MM/YYYY"), "0015-01-01 00:00:00");
        assert_eq!(read("5", "Y"), "2005-01-01 00:00:00");
        assert_eq!(read("300", "YYY"), "2300-01-01 00:00:00");
        assert_eq!(read("075", "YYY"), "1975-01-01 00:00:00");
        // A zone of minus zero hours and 30 minutes is west of UTC.
        assert_eq!(read("2025-03-05 10:00 -00 30", "YYYY-MM-DD HH24:MI TZH TZM"), "2025-03-05 10:30:00");
        assert_eq!(read("x", "OF").split(']').next(), Some("[0A000"));
        // No panic at chrono's ends, nor on signs where PostgreSQL reads none.
        assert_eq!(read("262142-12-31 23 -12", "YYYY-MM-DD HH24 TZH").split(']').next(), Some("[22008"));
        assert_eq!(read("-1", "MS").split(']').next(), Some("[22007"));
        assert_eq!(read("99999999999999999999", "J").split(']').next(), Some("[22008"));
        assert_eq!(read("999999999999999999,999", "Y,YYY").split(']').next(), Some("[22008"));
    }

    fn num(value: f64, template: &str) -> String {
        let t = NumberTemplate::parse(template).expect("template");
        t.format(&Digits::from_float(value, t.decimals()).expect("finite")).expect("format")
    }

    #[test]
    fn numbers_as_postgresql_prints_them() {
        assert_eq!(num(1234.5, "9999.99"), " 1234.50");
        assert_eq!(num(-1234.5, "9999.99"), "-1234.50");
        assert_eq!(num(12.0, "9999"), "   12");
        assert_eq!(num(-12.0, "9999"), "  -12");
        assert_eq!(num(12.0, "0000"), " 0012");
        assert_eq!(num(-12.0, "0000"), "-0012");
        assert_eq!(num(0.5, "9.99"), "  .50");
        assert_eq!(num(0.5, "0.99"), " 0.50");
        assert_eq!(num(1234567.891, "9,999,999.99"), " 1,234,567.89");
        assert_eq!(num(1234.0, "9,999,999"), "     1,234");
        assert_eq!(num(12345.0, "999"), " ###");
        assert_eq!(num(1.5, "FM999.99"), "1.5");
        assert_eq!(num(1.0, "FM999.99"), "1.");
        assert_eq!(num(1.0, "FM990.00"), "1.00");
        assert_eq!(num(-12.0, "FM9999"), "-12");
        assert_eq!(num(12.0, "S9999"), "  +12");
        assert_eq!(num(-12.0, "9999S"), "  12-");
        assert_eq!(num(-12.0, "MI9999"), "-  12");
        assert_eq!(num(12.0, "9999MI"), "  12 ");
        assert_eq!(num(-12.0, "9999PR"), "  <12>");
        assert_eq!(num(-485.0, "999PR"), "<485>");
        assert_eq!(num(12.0, "SG9999"), "+  12");
        assert_eq!(num(1234.5, "\"EUR \"9G999D99"), "EUR  1,234.50");
        assert_eq!(num(0.0, "9999.99"), "     .00");
        assert_eq!(num(3.0, "FM99th"), "3rd");
        // Zero, as PostgreSQL 15 writes it.
        assert_eq!(num(0.0, "9999"), "    0");
        assert_eq!(num(0.0, "FM9999"), "0");
        assert_eq!(num(0.0, "FM999.99"), "0.");
        assert_eq!(num(0.5, "FM999.99"), ".5");
        assert_eq!(num(0.0, "FM999,999"), "0");
        assert_eq!(num(-0.4, "9"), " 0");
        assert_eq!(num(0.0, "S9999"), "   +0");
        assert_eq!(num(5.0, "FM999.99"), "5.");
        let long = "9".repeat(MAX_TEMPLATE + 1);
        assert_eq!(NumberTemplate::parse(&long).map(|_| ()).map_err(|e| e.sqlstate()), Err("54000"));
        assert_eq!(NumberTemplate::parse(&format!("9.{}", "9".repeat(39))).map(|t| t.decimals()).map_err(|e| e.sqlstate()), Err("0A000"));
        assert_eq!(num(112.0, "999TH"), " 112TH");
        // A float rounds as C's printf (half to even on its binary value), a numeric half away from zero.
        assert_eq!(num(2.5, "9"), " 2");
        let exact = Digits::from_decimal(25, 1, 0);
        assert_eq!(NumberTemplate::parse("9").and_then(|t| t.format(&exact)).expect("format"), " 3");
        // A float has 15 significant digits (DBL_DIG); the template's decimals past them are dropped.
        assert_eq!(num(1.0 / 3.0, "0.99999999999999999999"), " 0.33333333333333");
        assert_eq!(Digits::from_decimal(-12345, 2, 1), Digits { negative: true, int: "123".into(), frac: "5".into() });
        assert_eq!(Digits::from_decimal(5, 0, 2), Digits { negative: false, int: "5".into(), frac: "00".into() });
        assert_eq!(Digits::from_decimal(-4, 2, 1), Digits { negative: false, int: "".into(), frac: "0".into() });
        assert_eq!(NumberTemplate::parse("9.9EEEE").map(|_| ()).map_err(|e| e.sqlstate()), Err("0A000"));
    }

    #[test]
    fn numbers_read_with_postgresql_templates() {
        assert_eq!(parse_number("1,234.5", "9,999.9").expect("read"), (12345, 1));
        assert_eq!(parse_number("12,454.8-", "99G999D9S").expect("read"), (-124548, 1));
        assert_eq!(parse_number("  12", "9999").expect("read"), (12, 0));
        assert_eq!(parse_number("-12", "9999").expect("read"), (-12, 0));
        assert_eq!(parse_number("<12.50>", "999.99PR").expect("read"), (-1250, 2));
        assert_eq!(parse_number("1.5", "9.99").expect("read"), (150, 2));
        assert_eq!(parse_number("abc", "999").map_err(|e| e.sqlstate()), Err("22P02"));
    }
}
