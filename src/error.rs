//! One error type for the whole crate, and its one mapping to PostgreSQL SQLSTATE codes.
//!
//! Every error carries a [`ErrorKind`] (what class of problem it is), a message saying what
//! went wrong and, where we know one, a `hint` saying what to do about it. The command line
//! prints `error: …` and `hint: …` lines; the wire protocol sends the SQLSTATE of the kind, the
//! message and the hint in an ErrorResponse. [`ErrorKind::sqlstate`] is the only place where
//! SQLSTATE codes are chosen.

use std::fmt;

use datafusion::error::DataFusionError;

/// The class of an error. Each maps to exactly one SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A command-line or configuration value is wrong.
    Config,
    /// The lake cannot be reached, read or written.
    Lake,
    /// A local file or socket operation failed.
    Io,
    /// SQL text does not parse.
    Syntax,
    /// A table, schema or function that does not exist.
    UndefinedTable,
    /// A column that does not exist.
    UndefinedColumn,
    /// A setting, prepared statement or other named object that does not exist.
    UndefinedObject,
    /// A cursor name that is unknown (or already in use, for DECLARE).
    InvalidCursorName,
    /// A setting given a value lakecube cannot take.
    InvalidParameterValue,
    /// A statement sent inside a transaction block that already failed.
    InFailedTransaction,
    /// A statement that needs a transaction block, sent outside one.
    NoActiveTransaction,
    /// A statement that cannot run inside a transaction block, sent inside one.
    ActiveTransaction,
    /// A client may not do this (e.g. retune the shared engine).
    InsufficientPrivilege,
    /// A statement that would write data or change the server is refused.
    ReadOnly,
    /// Valid SQL that lakecube does not support.
    FeatureNotSupported,
    /// A value of the wrong type or out of range in a query.
    DataException,
    /// A number that does not fit its type (integer overflow, a numeric too wide).
    NumericValueOutOfRange,
    /// Text that does not read as the type it must be (`'abc'::int`, `bool_col = 'x'`).
    InvalidTextRepresentation,
    /// A function or operator that does not exist for these argument types.
    UndefinedFunction,
    /// An expression of the wrong type where the statement needs another (a WHERE that is
    /// not boolean, CASE branches of types that do not match).
    DatatypeMismatch,
    /// A date or timestamp beyond the range that can be represented, or a field of one out
    /// of its range (`'2025-02-30'::date`, a time of 25:00).
    DatetimeOutOfRange,
    /// Text that does not read as a date or timestamp at all (`'nope'::date`).
    InvalidDatetimeFormat,
    /// An unqualified column name that more than one table of the FROM clause has.
    AmbiguousColumn,
    /// An ORDER BY or GROUP BY position past the select list.
    InvalidColumnReference,
    /// An argument outside a math function's domain (the square root of a negative number).
    InvalidArgumentForPowerFunction,
    /// The logarithm of zero or of a negative number.
    InvalidArgumentForLogarithm,
    /// An aggregate that does not fit a measure, a measure grouped by or filtered in WHERE.
    InvalidAggregate,
    /// Division by zero at execution.
    DivisionByZero,
    /// A subquery used as an expression returned more than one row.
    CardinalityViolation,
    /// A query was canceled (cancel request or statement timeout).
    QueryCanceled,
    /// The server refuses a connection because it is full.
    TooManyConnections,
    /// A malformed or oversized protocol message.
    ProtocolViolation,
    /// A connection refused before authentication (e.g. without the TLS the server requires).
    InvalidAuthorization,
    /// A session idle in a transaction block for longer than its timeout.
    IdleInTransactionTimeout,
    /// A session idle for longer than its timeout.
    IdleSessionTimeout,
    /// Memory or another resource ran out.
    ResourceExhausted,
    /// A value or request over a fixed limit (e.g. a function result over 1 GB).
    ProgramLimitExceeded,
    /// The server is shutting down.
    AdminShutdown,
    /// A bug in lakecube.
    Internal,
}

impl ErrorKind {
    /// The PostgreSQL SQLSTATE reported to SQL clients for this kind of error.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::Config => "F0000",
            ErrorKind::Lake => "58030",
            ErrorKind::Io => "58030",
            ErrorKind::Syntax => "42601",
            ErrorKind::UndefinedTable => "42P01",
            ErrorKind::UndefinedColumn => "42703",
            ErrorKind::UndefinedObject => "42704",
            ErrorKind::InvalidCursorName => "34000",
            ErrorKind::InvalidParameterValue => "22023",
            ErrorKind::InFailedTransaction => "25P02",
            ErrorKind::NoActiveTransaction => "25P01",
            ErrorKind::ActiveTransaction => "25001",
            ErrorKind::InsufficientPrivilege => "42501",
            ErrorKind::ReadOnly => "25006",
            ErrorKind::FeatureNotSupported => "0A000",
            ErrorKind::DataException => "22000",
            ErrorKind::NumericValueOutOfRange => "22003",
            ErrorKind::InvalidTextRepresentation => "22P02",
            ErrorKind::UndefinedFunction => "42883",
            ErrorKind::DatatypeMismatch => "42804",
            ErrorKind::DatetimeOutOfRange => "22008",
            ErrorKind::InvalidDatetimeFormat => "22007",
            ErrorKind::AmbiguousColumn => "42702",
            ErrorKind::InvalidColumnReference => "42P10",
            ErrorKind::InvalidArgumentForPowerFunction => "2201F",
            ErrorKind::InvalidArgumentForLogarithm => "2201E",
            ErrorKind::InvalidAggregate => "42803",
            ErrorKind::DivisionByZero => "22012",
            ErrorKind::CardinalityViolation => "21000",
            ErrorKind::QueryCanceled => "57014",
            ErrorKind::TooManyConnections => "53300",
            ErrorKind::ProtocolViolation => "08P01",
            ErrorKind::InvalidAuthorization => "28000",
            ErrorKind::IdleInTransactionTimeout => "25P03",
            ErrorKind::IdleSessionTimeout => "57P05",
            ErrorKind::ResourceExhausted => "53200",
            ErrorKind::ProgramLimitExceeded => "54000",
            ErrorKind::AdminShutdown => "57P01",
            ErrorKind::Internal => "XX000",
        }
    }
}

/// lakecube's error: a kind, a message and an optional hint.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// For SQL errors, the 1-based character position in the statement the error points at.
    pub position: Option<usize>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, position: None }
    }

    /// Adds a `hint:` line telling the user what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Points the error at a character of the statement (1-based), as PostgreSQL's `P` field.
    pub fn with_position(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn lake(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Lake, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn sqlstate(&self) -> &'static str {
        self.kind.sqlstate()
    }

    /// Message plus hint, as printed on a terminal.
    pub fn render(&self) -> String {
        match &self.hint {
            Some(h) => format!("error: {}\n  hint: {}", self.message, h),
            None => format!("error: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        let message = format!("lake table error: {e}");
        match encryption_hint(&message) {
            Some(hint) => Error::lake(message).with_hint(hint),
            None => Error::lake(message),
        }
    }
}

/// The hint for an encrypted lake read without its keys, or with others (storage::crypto).
fn encryption_hint(message: &str) -> Option<&'static str> {
    if message.contains("encrypted footer but decryption properties were not provided") {
        Some("the lake's files are encrypted: give lakecube its keys in LAKECUBE_ENCRYPTION_KEY or LAKECUBE_ENCRYPTION_KEY_FILE (docs/security.md)")
    } else if message.contains("unable to decrypt parquet footer") || message.contains("which is not among the keys given") {
        Some("the keys given are not those the lake's files were written with; after a rotation, keep the old key listed in the key file")
    } else {
        None
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::from(DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        classify_datafusion(e)
    }
}

/// Sorts a DataFusion error into our kinds, keeping DataFusion's message but without the
/// phase prefixes ("Error during planning: ") that mean nothing to a SQL client.
fn classify_datafusion(e: DataFusionError) -> Error {
    use datafusion::common::SchemaError;
    // Look through context wrappers to the error that decides the class.
    let root = e.find_root();
    let message = strip_df_prefix(&root.to_string());
    // Only errors of reading files (a user's SQL quoting the phrase stays what it is).
    if matches!(root, DataFusionError::ParquetError(_) | DataFusionError::External(_) | DataFusionError::Execution(_) | DataFusionError::ArrowError(..))
        && let Some(hint) = encryption_hint(&message)
    {
        return Error::new(ErrorKind::Lake, message).with_hint(hint);
    }
    match root {
        DataFusionError::SQL(..) => Error::new(ErrorKind::Syntax, message),
        DataFusionError::SchemaError(se, _) => match se.as_ref() {
            SchemaError::FieldNotFound { field, valid_fields } => {
                let names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
                let mut hint = match closest(&field.name, &names) {
                    Some(c) => format!("{} ", did_you_mean_hint(c)),
                    None => String::new(),
                };
                if !names.is_empty() {
                    let mut shown: Vec<&str> = names.iter().take(40).copied().collect();
                    shown.dedup();
                    hint.push_str(&format!("columns here: {}", shown.join(", ")));
                    if names.len() > 40 {
                        hint.push_str(", …");
                    }
                }
                let e = Error::new(ErrorKind::UndefinedColumn, format!("column \"{}\" does not exist", field.name));
                if hint.is_empty() { e } else { e.with_hint(hint) }
            }
            SchemaError::AmbiguousReference { field } => {
                Error::new(ErrorKind::AmbiguousColumn, format!("column reference \"{}\" is ambiguous", field.name))
                    .with_hint(format!("qualify the column with its table or alias (t.{})", field.name))
            }
            _ => Error::new(ErrorKind::DataException, message),
        },
        // A lakecube error raised inside DataFusion (a UDF, a memory rule) keeps its kind.
        DataFusionError::External(inner) if inner.downcast_ref::<Error>().is_some() => {
            let e = inner.downcast_ref::<Error>().expect("checked");
            Error { kind: e.kind, message: e.message.clone(), hint: e.hint.clone(), position: e.position }
        }
        DataFusionError::NotImplemented(_) => match message.strip_prefix("Unsupported SQL type ") {
            Some(name) if !is_postgres_type(name) => Error::new(ErrorKind::UndefinedObject, format!("type \"{name}\" does not exist"))
                .with_hint("lakecube's types are PostgreSQL's scalar types: integer, bigint, numeric, double precision, text, boolean, date, timestamp, interval …"),
            _ => Error::new(ErrorKind::FeatureNotSupported, message),
        },
        DataFusionError::ResourcesExhausted(_) => Error::new(ErrorKind::ResourceExhausted, format!("out of memory: {message}"))
            .with_hint("narrow the query with filters, or group by fewer columns; the server's memory_limit and query_memory_limit bound what one query may hold"),
        DataFusionError::Plan(m) if m.contains("table") && m.contains("not found") => {
            Error::new(ErrorKind::UndefinedTable, message)
                .with_hint("cube tables are in schema public (psql: \\dt), the lake's own tables in schema lake (\\dt lake.*)")
        }
        DataFusionError::Plan(_) => classify_plan(message),
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => classify_data(message),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) | DataFusionError::ParquetError(_) => {
            Error::new(ErrorKind::Lake, message)
        }
        _ => Error::new(ErrorKind::Internal, message),
    }
}

/// Whether `name` (as DataFusion prints a type it cannot plan) is one of PostgreSQL's own
/// types, which lakecube does not support (0A000), rather than no type at all (42704).
fn is_postgres_type(name: &str) -> bool {
    const OTHER_POSTGRES_TYPES: &[&str] = &[
        "money", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle", "cidr", "inet", "macaddr", "macaddr8",
        "bit", "varbit", "tsvector", "tsquery", "txid_snapshot", "pg_snapshot", "pg_lsn", "int4range", "int8range",
        "numrange", "tsrange", "tstzrange", "daterange", "int4multirange", "jsonpath", "record", "void", "trigger",
        "json", "jsonb", "uuid", "timetz", "xid", "xid8", "cid", "tid", "regnamespace", "regrole", "regoper",
        "regoperator", "regconfig", "regdictionary", "regcollation", "int2vector", "oidvector", "anyelement",
        "anyarray", "cstring", "internal", "refcursor", "datemultirange", "nummultirange", "tsmultirange",
        "tstzmultirange", "int8multirange",
    ];
    let plain = name.to_ascii_lowercase();
    !plain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || OTHER_POSTGRES_TYPES.contains(&plain.as_str())
}

/// A planning error by PostgreSQL's class: a function or operator that does not exist for the
/// argument types (42883), an expression of the wrong type (42804), a column outside GROUP BY
/// or a nested aggregate (42803), an ORDER BY position past the select list (42P10), else a
/// syntax error.
fn classify_plan(message: String) -> Error {
    if let Some((_, rest)) = message.split_once("column \"")
        && let Some((column, _)) = rest.split_once("\" must appear in the GROUP BY clause")
    {
        return Error::new(ErrorKind::InvalidAggregate, format!("column \"{column}\" must appear in the GROUP BY clause or be used in an aggregate function"))
            .with_hint(format!("add {column} to GROUP BY, or aggregate it (max({column}), count({column}))"));
    }
    if message.contains("Aggregate function calls cannot be nested") {
        return Error::new(ErrorKind::InvalidAggregate, "aggregate function calls cannot be nested")
            .with_hint("aggregate in a subquery and aggregate its result outside: SELECT sum(s) FROM (SELECT sum(x) AS s … GROUP BY …) t");
    }
    if let Some(rest) = message.strip_prefix("Order by column out of bounds, specified: ") {
        let position = rest.split(',').next().unwrap_or(rest);
        return Error::new(ErrorKind::InvalidColumnReference, format!("ORDER BY position {position} is not in select list"));
    }
    if let Some(rest) = message.strip_prefix("Cannot create filter with non-boolean predicate ")
        && let Some((_, ty)) = rest.rsplit_once(" returning ")
    {
        return Error::new(ErrorKind::DatatypeMismatch, format!("argument of WHERE must be type boolean, not type {}", pg_type_word(ty)));
    }
    if let Some(rest) = message.strip_prefix("Invalid function '") {
        let (name, after) = rest.split_once('\'').unwrap_or((rest, ""));
        let e = Error::new(ErrorKind::UndefinedFunction, format!("function {name} does not exist"));
        return match after.split_once("Did you mean '").and_then(|(_, c)| c.split_once('\'')) {
            Some((candidate, _)) => e.with_hint(did_you_mean_hint(candidate)),
            None => e.with_hint("psql's \\df lists the functions lakecube has"),
        };
    }
    const UNDEFINED_FUNCTION: &[&str] = &[
        "Cannot infer common argument type for comparison operation",
        "Cannot coerce arithmetic expression",
        "No function matches the given name and argument types",
        "Can not find compatible types to compare",
    ];
    const DATATYPE_MISMATCH: &[&str] = &["Failed to coerce then", "Cannot automatically convert", "to common types in CASE"];
    if UNDEFINED_FUNCTION.iter().any(|p| message.contains(p)) {
        Error::new(ErrorKind::UndefinedFunction, message)
            .with_hint("no operator or function matches these argument types; cast an argument (`x::integer`, `x::text`)")
    } else if DATATYPE_MISMATCH.iter().any(|p| message.contains(p)) {
        Error::new(ErrorKind::DatatypeMismatch, message)
    } else {
        Error::new(ErrorKind::Syntax, message)
    }
}

/// An execution error by PostgreSQL's class: a scalar subquery of several rows (21000),
/// division by zero (22012), a number out of its
/// type's range (22003), text that does not read as the type it is cast to (22P02).
fn classify_data(message: String) -> Error {
    if message.contains("Divide by zero") || message.contains("divide by zero") {
        return Error::new(ErrorKind::DivisionByZero, "division by zero");
    }
    if message.contains("Scalar subquery returned more than one row") {
        return Error::new(ErrorKind::CardinalityViolation, "more than one row returned by a subquery used as an expression")
            .with_hint("make the subquery return one row: an aggregate (max, count), a unique key in WHERE, or LIMIT 1");
    }
    if message.contains("Overflow happened") || message.contains("overflow on") || message.contains("Overflowing on") {
        return Error::new(ErrorKind::NumericValueOutOfRange, format!("value out of range: {message}"));
    }
    if message.contains("cannot take square root of a negative number") {
        return Error::new(ErrorKind::InvalidArgumentForPowerFunction, "cannot take square root of a negative number");
    }
    // Arrow: "Cannot cast string 'abc' to value of Int32 type", "Cannot cast value 'maybe' to
    // value of Boolean type".
    for prefix in ["Cannot cast string '", "Cannot cast value '"] {
        if let Some(rest) = message.split_once(prefix).map(|(_, r)| r)
            && let Some((text, ty)) = rest.rsplit_once("' to value of ")
        {
            return text_error(text, pg_type_word(ty.trim_end_matches(" type")));
        }
    }
    // Arrow: "Error parsing timestamp from '2025-03-05 25:00:00': error parsing time".
    if let Some(rest) = message.split_once("Error parsing timestamp from '").map(|(_, r)| r)
        && let Some((text, _)) = rest.rsplit_once("': ")
    {
        return text_error(text, "timestamp");
    }
    // Arrow: "Can't cast value 40000 to type Int16".
    if let Some(rest) = message.split_once("Can't cast value ").map(|(_, r)| r)
        && let Some((_, ty)) = rest.rsplit_once(" to type ")
    {
        return Error::new(ErrorKind::NumericValueOutOfRange, format!("{} out of range", pg_type_word(ty)));
    }
    // Arrow: "12345.6 is too large to store in a Decimal128 of precision 5. Max is 9999.9".
    if message.contains("is too large to store in a Decimal") {
        return Error::new(ErrorKind::NumericValueOutOfRange, "numeric field overflow")
            .with_hint(message.split_once(". Max is ").map_or(message.clone(), |(_, max)| format!("the largest value of this numeric type is {max}")));
    }
    Error::new(ErrorKind::DataException, message)
}

/// The error for `text` that does not read as a value of PostgreSQL type `word`, by
/// PostgreSQL's class: a well-formed integer too large for its type is 22003, a date or
/// timestamp written in digits with a field out of range (February 30, hour 25) 22008,
/// other text for a date or timestamp 22007, for anything else 22P02.
pub fn text_error(text: &str, word: &str) -> Error {
    let t = text.trim();
    let integer = t.strip_prefix(['-', '+']).unwrap_or(t);
    if matches!(word, "smallint" | "integer" | "bigint") && !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
        return Error::new(ErrorKind::NumericValueOutOfRange, format!("value \"{text}\" is out of range for type {word}"));
    }
    if word == "date" || word.starts_with("timestamp") {
        return if datetime_field_out_of_range(t) {
            Error::new(ErrorKind::DatetimeOutOfRange, format!("date/time field value out of range: \"{text}\""))
        } else {
            Error::new(ErrorKind::InvalidDatetimeFormat, format!("invalid input syntax for type {word}: \"{text}\""))
        };
    }
    Error::new(ErrorKind::InvalidTextRepresentation, format!("invalid input syntax for type {word}: \"{text}\""))
}

/// Whether `t` is `YYYY-MM-DD[ HH:MM[:SS[.f]]]` in digits with a field past its range (month
/// 13, February 30, hour 25, minute or second 60 and over).
fn datetime_field_out_of_range(t: &str) -> bool {
    let fields: Vec<&str> = t.split(['-', ' ', 'T', ':', '.']).collect();
    let digits = |f: &&str| !f.is_empty() && f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit());
    if !(3..=7).contains(&fields.len()) || !fields.iter().all(digits) || fields[0].len() != 4 {
        return false;
    }
    let n: Vec<u32> = fields.iter().map(|f| f.parse().unwrap_or(u32::MAX)).collect();
    let (year, month, day) = (n[0] as i32, n[1], n[2]);
    let day_ok = (1..=12).contains(&month) && day >= 1 && chrono::NaiveDate::from_ymd_opt(year, month, day).is_some();
    let time_ok = n.get(3).is_none_or(|h| *h <= 24) && n.get(4).is_none_or(|m| *m < 60) && n.get(5).is_none_or(|s| *s < 60);
    !(day_ok && time_ok)
}

/// PostgreSQL's word for an Arrow type named in an error (`Int32` → `integer`).
fn pg_type_word(arrow: &str) -> &str {
    arrow.parse::<datafusion::arrow::datatypes::DataType>().map(|t| pg_type_name(&t)).unwrap_or(arrow)
}

/// The name PostgreSQL's messages give the type of values of Arrow type `t`
/// (`integer out of range`, `invalid input syntax for type timestamp: "x"`).
pub fn pg_type_name(t: &datafusion::arrow::datatypes::DataType) -> &'static str {
    use datafusion::arrow::datatypes::DataType;
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Interval(_) => "interval",
        _ => "text",
    }
}

/// The wording of every hint that names what a typo likely meant: "did you mean `x`?" (`x`
/// found by [`closest`]).
pub fn did_you_mean_hint(candidate: &str) -> String {
    format!("did you mean `{candidate}`?")
}

/// ", did you mean `x`?" when a candidate is close to `word` ([`closest`]), else "": the end of
/// a message that names a mistyped `word`.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    closest(word, candidates).map(|c| format!(", {}", did_you_mean_hint(c))).unwrap_or_default()
}

/// The candidate closest to `word`, when close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&w, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn strip_df_prefix(s: &str) -> String {
    const PREFIXES: &[&str] = &[
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Execution error: ",
        "Arrow error: ",
        "Invalid argument error: ",
        "Resources exhausted: ",
        "Arithmetic overflow: ",
        "Cast error: ",
        "Compute error: ",
    ];
    let mut out = s.trim();
    loop {
        let before = out;
        for p in PREFIXES {
            if let Some(rest) = out.strip_prefix(p) {
                out = rest;
            }
        }
        if before == out {
            break;
        }
    }
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_get_their_sqlstate() {
        let e: Error = DataFusionError::NotImplemented("x".into()).into();
        assert_eq!(e.sqlstate(), "0A000");
        assert_eq!(e.message, "x");
        let e: Error = DataFusionError::Plan("table 'lake.nope' not found".into()).into();
        assert_eq!(e.sqlstate(), "42P01");
    }

    /// DataFusion's planning messages, by the class PostgreSQL gives the same mistake.
    #[test]
    fn planning_errors_get_postgresql_classes() {
        let class = |m: &str| {
            let e = classify_plan(m.to_string());
            format!("[{}] {}", e.sqlstate(), e.message)
        };
        assert_eq!(
            class("Column in SELECT must be in GROUP BY or an aggregate function: While expanding wildcard, column \"t.a\" must appear in the GROUP BY clause or must be part of an aggregate function, currently only \"t.b\" appears in the SELECT clause satisfies this requirement"),
            "[42803] column \"t.a\" must appear in the GROUP BY clause or be used in an aggregate function"
        );
        assert_eq!(class("Aggregate function calls cannot be nested: 'sum(t.a)' is nested inside 'sum(sum(t.a))'"), "[42803] aggregate function calls cannot be nested");
        assert_eq!(class("Order by column out of bounds, specified: 2, max: 1"), "[42P10] ORDER BY position 2 is not in select list");
        assert_eq!(class("Cannot create filter with non-boolean predicate 't.a' returning Int64"), "[42804] argument of WHERE must be type boolean, not type bigint");
        let e: Error = DataFusionError::NotImplemented("Unsupported SQL type nosuchtype".into()).into();
        assert_eq!((e.sqlstate(), e.message.as_str()), ("42704", "type \"nosuchtype\" does not exist"));
        let e: Error = DataFusionError::NotImplemented("Unsupported SQL type money".into()).into();
        assert_eq!(e.sqlstate(), "0A000");
        let e: Error = DataFusionError::NotImplemented("Unsupported SQL type JSONB".into()).into();
        assert_eq!(e.sqlstate(), "0A000");
    }

    /// Arrow's execution messages for casts, by the class PostgreSQL gives the same mistake.
    #[test]
    fn cast_errors_get_postgresql_classes() {
        let class = |m: &str| {
            let e = classify_data(m.to_string());
            format!("[{}] {}", e.sqlstate(), e.message)
        };
        assert_eq!(class("Cannot cast string '99999999999' to value of Int32 type"), "[22003] value \"99999999999\" is out of range for type integer");
        assert_eq!(class("Cannot cast string 'x1' to value of Int64 type"), "[22P02] invalid input syntax for type bigint: \"x1\"");
        assert_eq!(class("Cannot cast value 'maybe' to value of Boolean type"), "[22P02] invalid input syntax for type boolean: \"maybe\"");
        assert_eq!(class("Cannot cast string '2025-02-30' to value of Date32 type"), "[22008] date/time field value out of range: \"2025-02-30\"");
        assert_eq!(class("Cannot cast string '2025-13-01' to value of Date32 type"), "[22008] date/time field value out of range: \"2025-13-01\"");
        assert_eq!(class("Cannot cast string 'nope' to value of Date32 type"), "[22007] invalid input syntax for type date: \"nope\"");
        // A valid date Arrow does not read is not "out of range".
        assert_eq!(class("Cannot cast string '2025-02-28' to value of Date32 type"), "[22007] invalid input syntax for type date: \"2025-02-28\"");
        assert_eq!(
            class("Parser error: Error parsing timestamp from '2025-03-05 25:00:00': error parsing time"),
            "[22008] date/time field value out of range: \"2025-03-05 25:00:00\""
        );
        assert_eq!(class("Can't cast value 40000 to type Int16"), "[22003] smallint out of range");
        assert_eq!(class("12345.6 is too large to store in a Decimal128 of precision 5. Max is 9999.9"), "[22003] numeric field overflow");
        assert_eq!(class("cannot take square root of a negative number"), "[2201F] cannot take square root of a negative number");
    }
}
