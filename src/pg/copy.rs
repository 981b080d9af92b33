//! `COPY … TO STDOUT`: the statement read as PostgreSQL 15 reads it, and each row written as
//! PostgreSQL writes it in the text, CSV and binary formats (`src/backend/commands/copyto.c`:
//! `CopyAttributeOutText`, `CopyAttributeOutCSV`, the PGCOPY signature).
//!
//! COPY out is a read: the query (or table) it copies is planned and run like any SELECT, with
//! the same read-only rules. `COPY … FROM` is a write (25006), and `COPY … TO 'file'` or
//! `PROGRAM` would write on the server's disk (42501, as for a PostgreSQL user without
//! `pg_write_server_files`).

use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::parse::{LineIndex, leading_words};
use crate::error::{Error, ErrorKind, Result};

/// A `COPY … TO STDOUT` statement: the query whose rows it sends, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyTo {
    /// A SELECT: the statement's query, or `SELECT … FROM table` for a table.
    pub query: String,
    pub format: CopyFormat,
    /// A header line of column names (text and CSV).
    pub header: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    /// Tab-separated, backslash escapes, `\N` for NULL.
    Text { delimiter: u8, null: String },
    Csv { delimiter: u8, quote: u8, escape: u8, null: String, force_quote: ForceQuote },
    /// PGCOPY: the binary form of each value, as in a binary DataRow.
    Binary,
}

/// The columns CSV quotes even when they need no quotes.
#[derive(Debug, Clone, PartialEq)]
pub enum ForceQuote {
    None,
    All,
    Columns(Vec<String>),
}

impl CopyTo {
    /// The format code of CopyOutResponse: 0 text (text and CSV), 1 binary.
    pub fn format_code(&self) -> i8 {
        if self.format == CopyFormat::Binary { 1 } else { 0 }
    }
}

/// `Some` when `sql` is a COPY statement: what it copies out, or the error PostgreSQL gives
/// for it (a COPY that is not `TO STDOUT`, a bad option).
pub fn parse_copy(sql: &str) -> Option<Result<CopyTo>> {
    if leading_words(sql, 1).first().map(String::as_str) != Some("COPY") {
        return None;
    }
    Some(parse(sql))
}

fn parse(sql: &str) -> Result<CopyTo> {
    let (text, quote_all) = force_quote_star(sql)?;
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &text)
        .map_err(|e| Error::new(ErrorKind::Syntax, format!("syntax error: {}", e.to_string().trim_start_matches("sql parser error: "))))?;
    let Some(Statement::Copy { source, to, target, options, legacy_options, .. }) = statements.pop().filter(|_| statements.is_empty()) else {
        return Err(Error::new(ErrorKind::Syntax, "syntax error: expected one COPY statement"));
    };
    if !to {
        return Err(Error::new(ErrorKind::ReadOnly, "cannot execute COPY FROM in a read-only transaction")
            .with_hint("lakecube answers queries; data enters the lake through `lakecube ingest`"));
    }
    match target {
        CopyTarget::Stdout => {}
        CopyTarget::File { .. } | CopyTarget::Program { .. } => {
            return Err(Error::new(ErrorKind::InsufficientPrivilege, "must be superuser or have privileges of the pg_write_server_files role to COPY to a file")
                .with_hint("Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone."));
        }
        CopyTarget::Stdin => return Err(Error::new(ErrorKind::Syntax, "syntax error: COPY TO STDIN")),
    }
    let query = match source {
        CopySource::Query(q) => q.to_string(),
        CopySource::Table { table_name, columns } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table { table_name, columns } => {
            format!("SELECT {} FROM {table_name}", columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        }
    };
    let mut o = Options::default();
    for option in options {
        o.apply(option)?;
    }
    for option in legacy_options {
        o.apply_legacy(option)?;
    }
    if quote_all {
        o.force_quote = Some(ForceQuote::All);
    }
    o.finish(query)
}

/// `FORCE_QUOTE *` (or `FORCE QUOTE *`), which sqlparser does not read: the statement without
/// the `*` (`FORCE_QUOTE ("*")` for the parser), and whether it was there.
fn force_quote_star(sql: &str) -> Result<(String, bool)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(ErrorKind::Syntax, format!("syntax error: {e}")))?;
    let words: Vec<_> = tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    let is = |i: usize, w: &str| matches!(&words.get(i).map(|t| &t.token), Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    // Options follow the target: the query being copied may name a column force_quote.
    let after = (0..words.len()).rev().find(|&i| is(i, "STDOUT")).map_or(words.len(), |i| i + 1);
    for i in after..words.len() {
        let star = if is(i, "FORCE_QUOTE") {
            i + 1
        } else if is(i, "FORCE") && is(i + 1, "QUOTE") {
            i + 2
        } else {
            continue;
        };
        if let Some(t) = words.get(star).filter(|t| t.token == Token::Mul) {
            let at = LineIndex::new(sql).byte(&t.span.start);
            let legacy = !is(i, "FORCE_QUOTE");
            let with = if legacy { "\"*\"" } else { "(\"*\")" };
            return Ok((format!("{}{with}{}", &sql[..at], &sql[at + 1..]), true));
        }
    }
    Ok((sql.to_string(), false))
}

/// The options as given, checked together at the end as PostgreSQL's `ProcessCopyOptions`.
#[derive(Default)]
struct Options {
    format: Option<String>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
    force_quote: Option<ForceQuote>,
}

fn conflicting(what: &str) -> Error {
    Error::new(ErrorKind::Syntax, format!("conflicting or redundant options: {what}"))
}

fn set<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<()> {
    if slot.is_some() {
        return Err(conflicting(what));
    }
    *slot = Some(value);
    Ok(())
}

fn columns(ids: Vec<Ident>) -> ForceQuote {
    if ids.len() == 1 && ids[0].value == "*" && ids[0].quote_style.is_some() {
        ForceQuote::All
    } else {
        ForceQuote::Columns(ids.into_iter().map(|i| if i.quote_style.is_some() { i.value } else { i.value.to_lowercase() }).collect())
    }
}

impl Options {
    fn apply(&mut self, option: CopyOption) -> Result<()> {
        match option {
            CopyOption::Format(f) => set(&mut self.format, f.value.to_lowercase(), "FORMAT"),
            CopyOption::Delimiter(c) => set(&mut self.delimiter, c, "DELIMITER"),
            CopyOption::Null(s) => set(&mut self.null, s, "NULL"),
            CopyOption::Header(h) => set(&mut self.header, h, "HEADER"),
            CopyOption::Quote(c) => set(&mut self.quote, c, "QUOTE"),
            CopyOption::Escape(c) => set(&mut self.escape, c, "ESCAPE"),
            CopyOption::ForceQuote(ids) => set(&mut self.force_quote, columns(ids), "FORCE_QUOTE"),
            CopyOption::Encoding(e) => match e.to_uppercase().replace(['-', '_'], "").as_str() {
                "UTF8" | "UNICODE" => Ok(()),
                _ => Err(Error::new(ErrorKind::FeatureNotSupported, format!("COPY ENCODING '{e}' is not supported"))
                    .with_hint("lakecube sends UTF8; convert on the client")),
            },
            CopyOption::Freeze(_) => Err(Error::new(ErrorKind::FeatureNotSupported, "COPY FREEZE cannot be used with COPY TO")),
            CopyOption::ForceNotNull(_) => Err(Error::new(ErrorKind::FeatureNotSupported, "COPY FORCE_NOT_NULL cannot be used with COPY TO")),
            CopyOption::ForceNull(_) => Err(Error::new(ErrorKind::FeatureNotSupported, "COPY FORCE_NULL cannot be used with COPY TO")),
        }
    }

    fn apply_legacy(&mut self, option: CopyLegacyOption) -> Result<()> {
        match option {
            CopyLegacyOption::Binary => set(&mut self.format, "binary".into(), "BINARY"),
            CopyLegacyOption::Delimiter(c) => set(&mut self.delimiter, c, "DELIMITER"),
            CopyLegacyOption::Null(s) => set(&mut self.null, s, "NULL"),
            CopyLegacyOption::Header => set(&mut self.header, true, "HEADER"),
            CopyLegacyOption::Csv(options) => {
                set(&mut self.format, "csv".into(), "CSV")?;
                for o in options {
                    match o {
                        CopyLegacyCsvOption::Header => set(&mut self.header, true, "HEADER")?,
                        CopyLegacyCsvOption::Quote(c) => set(&mut self.quote, c, "QUOTE")?,
                        CopyLegacyCsvOption::Escape(c) => set(&mut self.escape, c, "ESCAPE")?,
                        CopyLegacyCsvOption::ForceQuote(ids) => set(&mut self.force_quote, columns(ids), "FORCE QUOTE")?,
                        CopyLegacyCsvOption::ForceNotNull(_) => {
                            return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY FORCE_NOT_NULL cannot be used with COPY TO"));
                        }
                    }
                }
                Ok(())
            }
            other => Err(Error::new(ErrorKind::Syntax, format!("syntax error: COPY option {other} is not PostgreSQL's"))),
        }
    }

    /// QUOTE, ESCAPE and FORCE_QUOTE outside CSV.
    fn csv_only(&self) -> Result<()> {
        let given = [("quote", self.quote.is_some()), ("escape", self.escape.is_some()), ("force quote", self.force_quote.is_some())];
        match given.iter().find(|(_, on)| *on) {
            Some((what, _)) => Err(Error::new(ErrorKind::FeatureNotSupported, format!("COPY {what} available only in CSV mode"))),
            None => Ok(()),
        }
    }

    fn finish(self, query: String) -> Result<CopyTo> {
        let format = self.format.clone().unwrap_or_else(|| "text".into());
        let byte = |c: char, what: &str| -> Result<u8> {
            u8::try_from(c as u32)
                .ok()
                .filter(|b| b.is_ascii())
                .ok_or_else(|| Error::new(ErrorKind::FeatureNotSupported, format!("COPY {what} must be a single one-byte character")))
        };
        let header = self.header.unwrap_or(false);
        let copy = |format| Ok(CopyTo { query: query.clone(), format, header });
        match format.as_str() {
            "binary" => {
                if self.delimiter.is_some() {
                    return Err(Error::new(ErrorKind::Syntax, "cannot specify DELIMITER in BINARY mode"));
                }
                if self.null.is_some() {
                    return Err(Error::new(ErrorKind::Syntax, "cannot specify NULL in BINARY mode"));
                }
                if header {
                    return Err(Error::new(ErrorKind::Syntax, "cannot specify HEADER in BINARY mode"));
                }
                self.csv_only()?;
                copy(CopyFormat::Binary)
            }
            "text" => {
                self.csv_only()?;
                let delimiter = byte(self.delimiter.unwrap_or('\t'), "delimiter")?;
                let null = self.null.unwrap_or_else(|| "\\N".into());
                if matches!(delimiter, b'\n' | b'\r') || null.contains(['\n', '\r']) {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY delimiter and null representation cannot be newline or carriage return"));
                }
                if delimiter == b'\\' || delimiter.is_ascii_lowercase() || delimiter.is_ascii_digit() || delimiter == b'.' {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, format!("COPY delimiter cannot be \"{}\"", delimiter as char)));
                }
                if null.as_bytes().contains(&delimiter) {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY delimiter character must not appear in the NULL specification"));
                }
                copy(CopyFormat::Text { delimiter, null })
            }
            "csv" => {
                let delimiter = byte(self.delimiter.unwrap_or(','), "delimiter")?;
                let quote = byte(self.quote.unwrap_or('"'), "quote")?;
                let escape = byte(self.escape.unwrap_or(quote as char), "escape")?;
                let null = self.null.unwrap_or_default();
                if matches!(delimiter, b'\n' | b'\r') || null.contains(['\n', '\r']) {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY delimiter and null representation cannot be newline or carriage return"));
                }
                if delimiter == quote {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY delimiter and quote must be different"));
                }
                if null.as_bytes().contains(&delimiter) {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "COPY delimiter character must not appear in the NULL specification"));
                }
                if null.as_bytes().contains(&quote) {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "CSV quote character must not appear in the NULL specification"));
                }
                let force_quote = self.force_quote.unwrap_or(ForceQuote::None);
                copy(CopyFormat::Csv { delimiter, quote, escape, null, force_quote })
            }
            other => Err(Error::new(ErrorKind::InvalidParameterValue, format!("COPY format \"{other}\" not recognized"))
                .with_hint("FORMAT text, csv or binary")),
        }
    }
}

/// The PGCOPY signature, flags and header extension length that open binary COPY data.
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count -1 that ends binary COPY data.
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// One row in the text or CSV format, `\n`-terminated; `values` are the columns' text forms
/// (`None` for NULL) and `quoted`, one flag per column, tells which CSV columns FORCE_QUOTE
/// names.
pub fn text_row<'a>(format: &CopyFormat, values: impl IntoIterator<Item = Option<&'a [u8]>>, quoted: &[bool], out: &mut Vec<u8>) {
    for (i, v) in values.into_iter().enumerate() {
        text_field(format, i, v, quoted, out);
    }
    out.push(b'\n');
}

/// Column `i` of a row in the text or CSV format: its delimiter (after the first), then its
/// value escaped or quoted, or the NULL string (see [`text_row`]).
pub fn text_field(format: &CopyFormat, i: usize, v: Option<&[u8]>, quoted: &[bool], out: &mut Vec<u8>) {
    match format {
        CopyFormat::Text { delimiter, null } => {
            if i > 0 {
                out.push(*delimiter);
            }
            match v {
                None => out.extend_from_slice(null.as_bytes()),
                Some(v) => text_value(v, *delimiter, out),
            }
        }
        CopyFormat::Csv { delimiter, quote, escape, null, .. } => {
            if i > 0 {
                out.push(*delimiter);
            }
            // A single column's `\.` must be quoted (psql's end of data).
            let single = quoted.len() == 1;
            match v {
                None => out.extend_from_slice(null.as_bytes()),
                Some(v) => csv_value(v, *delimiter, *quote, *escape, null.as_bytes(), quoted.get(i).copied().unwrap_or(false), single, out),
            }
        }
        CopyFormat::Binary => unreachable!("binary rows are DataRows"),
    }
}

/// `CopyAttributeOutText`: backslash, newline, carriage return, tab, backspace, form feed,
/// vertical tab and the delimiter escaped with a backslash. The runs between them (all of a
/// number, a date, most text) are copied whole.
fn text_value(mut v: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    while let Some(at) = v.iter().position(|&b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0b | 0x0c) || b == delimiter) {
        out.extend_from_slice(&v[..at]);
        let b = v[at];
        out.push(b'\\');
        out.push(match b {
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x0b => b'v',
            b => b,
        });
        v = &v[at + 1..];
    }
    out.extend_from_slice(v);
}

/// `CopyAttributeOutCSV`: quoted when forced, when it holds the delimiter, the quote, a
/// newline or a carriage return, when it reads as the NULL string (so the empty string stays
/// apart from NULL), or when a single column's value is `\.` (psql's end of data); inside
/// quotes the quote and escape characters are preceded by the escape character.
#[allow(clippy::too_many_arguments)]
fn csv_value(v: &[u8], delimiter: u8, quote: u8, escape: u8, null: &[u8], force: bool, single: bool, out: &mut Vec<u8>) {
    let needs = force
        || v == null
        || (single && v == b"\\.")
        || v.iter().any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r');
    if !needs {
        out.extend_from_slice(v);
        return;
    }
    out.push(quote);
    for &b in v {
        if b == quote || b == escape {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(sql: &str) -> CopyTo {
        parse_copy(sql).expect("a COPY").unwrap_or_else(|e| panic!("{sql}: {}", e.message))
    }

    fn error(sql: &str) -> (String, String) {
        let e = parse_copy(sql).expect("a COPY").expect_err(sql);
        (e.sqlstate().to_string(), e.message)
    }

    #[test]
    fn reads_the_query_or_table_and_the_format() {
        assert!(parse_copy("SELECT 1").is_none());
        let c = copy("COPY (SELECT region FROM retail) TO STDOUT");
        assert_eq!(c.query, "SELECT region FROM retail");
        assert_eq!(c.format, CopyFormat::Text { delimiter: b'\t', null: "\\N".into() });
        assert_eq!(copy("copy lake.stores (store_id, region) to stdout").query, "SELECT store_id, region FROM lake.stores");
        assert_eq!(copy("COPY lake.stores TO STDOUT (FORMAT binary)").format, CopyFormat::Binary);
        // psql's \copy … csv header sends the pre-9.0 syntax.
        let c = copy("COPY ( SELECT 1 ) TO STDOUT csv header");
        assert!(c.header);
        assert_eq!(c.format, CopyFormat::Csv { delimiter: b',', quote: b'"', escape: b'"', null: String::new(), force_quote: ForceQuote::None });
        let c = copy("COPY t TO STDOUT WITH (FORMAT csv, DELIMITER ';', QUOTE '''', NULL 'NA', FORCE_QUOTE (a, \"B\"))");
        assert_eq!(c.format, CopyFormat::Csv { delimiter: b';', quote: b'\'', escape: b'\'', null: "NA".into(), force_quote: ForceQuote::Columns(vec!["a".into(), "B".into()]) });
        assert!(matches!(copy("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE *)").format, CopyFormat::Csv { force_quote: ForceQuote::All, .. }));
        assert!(matches!(copy("COPY t TO STDOUT CSV FORCE QUOTE *").format, CopyFormat::Csv { force_quote: ForceQuote::All, .. }));
        assert!(copy("COPY t TO STDOUT (FORMAT text, HEADER)").header);
        // A column named force_quote in the query is not the option.
        assert_eq!(copy("COPY (SELECT force_quote * 2 AS x FROM (SELECT 3 AS force_quote) s) TO STDOUT").query, "SELECT force_quote * 2 AS x FROM (SELECT 3 AS force_quote) s");
    }

    #[test]
    fn refuses_what_postgresql_refuses() {
        assert_eq!(error("COPY t FROM STDIN").0, "25006");
        assert_eq!(error("COPY t TO '/etc/passwd'").0, "42501");
        assert_eq!(error("COPY t TO PROGRAM 'rm -rf /'").0, "42501");
        assert_eq!(error("COPY t TO STDOUT (FORMAT parquet)"), ("22023".into(), "COPY format \"parquet\" not recognized".into()));
        assert_eq!(error("COPY t TO STDOUT (FORMAT binary, DELIMITER ',')").0, "42601");
        assert_eq!(error("COPY t TO STDOUT (QUOTE '\"')").0, "0A000");
        assert_eq!(error("COPY t TO STDOUT (FORMAT csv, DELIMITER ',', QUOTE ',')").0, "0A000");
        assert_eq!(error("COPY t TO STDOUT (FORMAT csv, FORMAT text)").0, "42601");
        assert_eq!(error("COPY t TO STDOUT (DELIMITER '\\')").0, "0A000");
        assert_eq!(error("COPY t TO STDOUT (ENCODING 'LATIN1')").0, "0A000");
        assert_eq!(error("COPY (SELECT TO STDOUT").0, "42601");
    }

    fn row(format: &CopyFormat, values: &[Option<&str>], quoted: &[bool]) -> String {
        let mut out = Vec::new();
        let quoted = if quoted.is_empty() { vec![false; values.len()] } else { quoted.to_vec() };
        text_row(format, values.iter().map(|v| v.map(str::as_bytes)), &quoted, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_are_written_as_postgresql_writes_them() {
        let text = CopyFormat::Text { delimiter: b'\t', null: "\\N".into() };
        assert_eq!(row(&text, &[Some("a\tb"), None, Some("c\\d\ne")], &[]), "a\\tb\t\\N\tc\\\\d\\ne\n");
        let piped = CopyFormat::Text { delimiter: b'|', null: "".into() };
        assert_eq!(row(&piped, &[Some("\r\x08\x0b\x0cx|y\t"), Some("plain"), None], &[]), "\\r\\b\\v\\fx\\|y\\t|plain|\n");
        let csv = CopyFormat::Csv { delimiter: b',', quote: b'"', escape: b'"', null: String::new(), force_quote: ForceQuote::None };
        // The empty string is quoted, NULL is not: they stay apart.
        assert_eq!(row(&csv, &[Some(""), None, Some("x,y"), Some("say \"hi\""), Some("plain")], &[]), "\"\",,\"x,y\",\"say \"\"hi\"\"\",plain\n");
        assert_eq!(row(&csv, &[Some("1"), Some("2")], &[false, true]), "1,\"2\"\n");
        assert_eq!(row(&csv, &[Some("\\.")], &[]), "\"\\.\"\n");
        let escaped = CopyFormat::Csv { delimiter: b',', quote: b'"', escape: b'\\', null: "NA".into(), force_quote: ForceQuote::None };
        assert_eq!(row(&escaped, &[Some("a\"b\\c"), Some("NA"), None, Some("BANANA")], &[]), "\"a\\\"b\\\\c\",\"NA\",NA,BANANA\n");
    }
}
