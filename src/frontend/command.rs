//! The statements a session answers without a query plan (`SET`, `SHOW`, `RESET`, `BEGIN`,
//! `COMMIT`, `DECLARE … CURSOR`, `FETCH`, `MOVE`, `CLOSE`, `DISCARD` …): each parsed
//! ([`parse_command`]) and applied ([`Command::apply`]) here, in the manner of mini-redis's
//! `cmd/`.
//!
//! lakecube is read-only, so a transaction block changes nothing but what PostgreSQL clients
//! observe: the status byte in ReadyForQuery, "commands ignored until end of transaction
//! block" after an error, and cursors without `WITH HOLD` closing at its end. Clients depend
//! on all three (psycopg and pgjdbc track the status byte; Tableau reads every result through
//! a cursor).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::tokenizer::Token;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Tag};
use pgwire::messages::response::TransactionStatus;
use tokio_util::sync::CancellationToken;

use super::cancel::{Clock, bounded, data_rows, plan_in_task};
use super::encode::{encode_batch, field_infos};
use super::session::{Cursor, MAX_CURSORS, Session};
use crate::engine::{Engine, Planned};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::parse::{LineIndex, one_line, tokenize};
use crate::pg::settings::REPORTED;

/// A statement the session answers itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    RollbackTo,
    Savepoint,
    Release,
    Set { name: String, value: Option<String> },
    /// `SET` forms accepted as they are (transaction characteristics: lakecube reads a
    /// snapshot of the lake per query whatever they say).
    SetAccepted { tag: &'static str },
    Show(String),
    ShowAll,
    Reset(String),
    ResetAll,
    Discard { all: bool },
    Deallocate(Option<String>),
    Close(Option<String>),
    Unlisten,
    Declare { name: String, binary: bool, hold: bool, scroll: bool, query: String },
    Fetch { name: String, count: Count, is_move: bool },
}

/// How many rows a FETCH or MOVE asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    Rows(u64),
    All,
    /// A direction other than forward (PRIOR, BACKWARD, FIRST, LAST, ABSOLUTE, negative counts).
    Backward,
}

/// Words and literals of a statement, for matching its grammar.
struct Words {
    toks: Vec<(Token, usize)>,
    pos: usize,
}

impl Words {
    fn new(text: &str) -> Result<Words> {
        let index = LineIndex::new(text);
        let toks = tokenize(text)?
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
            .map(|t| {
                let at = index.byte(&t.span.start);
                (t.token, at)
            })
            .collect();
        Ok(Words { toks, pos: 0 })
    }

    fn peek_kw(&self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some((Token::Word(w), _)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn peek_kw_at(&self, ahead: usize) -> Option<String> {
        match self.toks.get(self.pos + ahead) {
            Some((Token::Word(w), _)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn kw(&mut self, k: &str) -> bool {
        if self.peek_kw().as_deref() == Some(k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn kws(&mut self, ks: &[&str]) -> bool {
        let save = self.pos;
        for k in ks {
            if !self.kw(k) {
                self.pos = save;
                return false;
            }
        }
        true
    }

    /// An identifier (quoted keeps its case, unquoted is lower-cased).
    fn ident(&mut self) -> Option<String> {
        let (t, _) = self.toks.get(self.pos)?;
        let s = match t {
            Token::Word(w) if w.quote_style.is_some() => w.value.clone(),
            Token::Word(w) => w.value.to_ascii_lowercase(),
            _ => return None,
        };
        self.pos += 1;
        Some(s)
    }

    /// A dotted name (`a.b`), for settings.
    fn name(&mut self) -> Option<String> {
        let mut n = self.ident()?;
        while matches!(self.toks.get(self.pos), Some((Token::Period, _))) {
            self.pos += 1;
            n.push('.');
            n.push_str(&self.ident()?);
        }
        Some(n)
    }

    /// An optional row count: absent is one row, negative is backward.
    fn count(&mut self) -> Count {
        match self.number() {
            Some(n) if n >= 0 => Count::Rows(n as u64),
            Some(_) => Count::Backward,
            None => Count::Rows(1),
        }
    }

    fn number(&mut self) -> Option<i64> {
        let neg = if matches!(self.toks.get(self.pos), Some((Token::Minus, _))) {
            self.pos += 1;
            true
        } else {
            false
        };
        match self.toks.get(self.pos) {
            Some((Token::Number(n, _), _)) => {
                let v: i64 = n.parse().ok()?;
                self.pos += 1;
                Some(if neg { -v } else { v })
            }
            _ => None,
        }
    }

    /// The rest as a setting value: literals unquoted, list items joined by ", ".
    fn value(&mut self) -> Option<String> {
        let mut items: Vec<String> = Vec::new();
        let mut cur = String::new();
        while let Some((t, _)) = self.toks.get(self.pos) {
            match t {
                Token::Comma => items.push(std::mem::take(&mut cur)),
                Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => cur.push_str(s),
                Token::Word(w) if w.quote_style.is_some() => cur.push_str(&w.value),
                Token::Word(w) => cur.push_str(&w.value),
                Token::Number(n, _) => cur.push_str(n),
                other => cur.push_str(&other.to_string()),
            }
            self.pos += 1;
        }
        items.push(cur);
        let v = items.join(", ");
        (!v.is_empty()).then_some(v)
    }

    /// A role name as PostgreSQL reads one: a quoted identifier or string as written, an
    /// unquoted word folded to lower case (`SET ROLE Analyst` is role `analyst`).
    fn role_name(&mut self) -> Option<String> {
        let name = match self.toks.get(self.pos)? {
            (Token::SingleQuotedString(s), _) => s.clone(),
            (Token::Word(w), _) if w.quote_style.is_some() => w.value.clone(),
            (Token::Word(w), _) => w.value.to_lowercase(),
            _ => return None,
        };
        self.pos += 1;
        self.toks[self.pos..].iter().all(|(t, _)| matches!(t, Token::SemiColon)).then_some(name)
    }

    fn rest_from(&self, text: &str) -> String {
        self.toks.get(self.pos).map(|(_, at)| text[*at..].trim().to_string()).unwrap_or_default()
    }
}

fn syntax(text: &str) -> Error {
    Error::new(ErrorKind::Syntax, format!("syntax error in \"{}\"", one_line(text)))
}

/// Recognises a session statement; `None` means it is a query for the engine.
pub fn parse_command(text: &str) -> Result<Option<Command>> {
    let mut w = Words::new(text)?;
    let Some(first) = w.peek_kw() else { return Ok(None) };
    w.pos += 1;
    let cmd = match first.as_str() {
        "BEGIN" | "START" => {
            if first == "START" && !w.kw("TRANSACTION") {
                return Err(syntax(text));
            }
            Command::Begin
        }
        "COMMIT" | "END" => Command::Commit,
        "ABORT" => Command::Rollback,
        "ROLLBACK" => {
            let _ = w.kw("WORK") || w.kw("TRANSACTION");
            if w.kw("TO") { Command::RollbackTo } else { Command::Rollback }
        }
        "SAVEPOINT" => Command::Savepoint,
        "RELEASE" => Command::Release,
        "SET" => parse_set(&mut w, text)?,
        "SHOW" => {
            if w.kws(&["ALL"]) {
                Command::ShowAll
            } else if w.kws(&["TIME", "ZONE"]) {
                Command::Show("TimeZone".into())
            } else if w.kws(&["TRANSACTION", "ISOLATION", "LEVEL"]) {
                Command::Show("transaction_isolation".into())
            } else if w.kws(&["SESSION", "AUTHORIZATION"]) {
                Command::Show("session_authorization".into())
            } else {
                Command::Show(w.name().ok_or_else(|| syntax(text))?)
            }
        }
        "RESET" => {
            if w.kw("ALL") {
                Command::ResetAll
            } else if w.kws(&["TIME", "ZONE"]) {
                Command::Reset("TimeZone".into())
            } else if w.kws(&["SESSION", "AUTHORIZATION"]) {
                Command::Reset("session_authorization".into())
            } else if w.kw("ROLE") {
                Command::Reset("role".into())
            } else {
                Command::Reset(w.name().ok_or_else(|| syntax(text))?)
            }
        }
        "DISCARD" => {
            let what = w.peek_kw().unwrap_or_default();
            match what.as_str() {
                "ALL" => Command::Discard { all: true },
                "PLANS" | "SEQUENCES" | "TEMP" | "TEMPORARY" => Command::Discard { all: false },
                _ => return Err(syntax(text)),
            }
        }
        "DEALLOCATE" => {
            let _ = w.kw("PREPARE");
            if w.kw("ALL") { Command::Deallocate(None) } else { Command::Deallocate(Some(w.ident().ok_or_else(|| syntax(text))?)) }
        }
        "CLOSE" => {
            if w.kw("ALL") { Command::Close(None) } else { Command::Close(Some(w.ident().ok_or_else(|| syntax(text))?)) }
        }
        "UNLISTEN" => Command::Unlisten,
        "DECLARE" => {
            let name = w.ident().ok_or_else(|| syntax(text))?;
            let mut binary = false;
            let mut scroll = false;
            loop {
                if w.kw("BINARY") {
                    binary = true;
                } else if w.kw("ASENSITIVE") || w.kw("INSENSITIVE") {
                } else if w.kws(&["NO", "SCROLL"]) {
                    scroll = false;
                } else if w.kw("SCROLL") {
                    scroll = true;
                } else {
                    break;
                }
            }
            if !w.kw("CURSOR") {
                return Err(syntax(text));
            }
            let hold = if w.kws(&["WITH", "HOLD"]) {
                true
            } else {
                let _ = w.kws(&["WITHOUT", "HOLD"]);
                false
            };
            if !w.kw("FOR") {
                return Err(syntax(text));
            }
            let query = w.rest_from(text);
            if query.is_empty() {
                return Err(syntax(text));
            }
            Command::Declare { name, binary, hold, scroll, query }
        }
        "FETCH" | "MOVE" => {
            let count = if w.kw("NEXT") {
                Count::Rows(1)
            } else if w.kw("ALL") {
                Count::All
            } else if w.kw("FORWARD") {
                if w.kw("ALL") { Count::All } else { w.count() }
            } else if w.kw("RELATIVE") {
                match w.number() {
                    Some(n) if n >= 0 => Count::Rows(n as u64),
                    _ => Count::Backward,
                }
            } else if w.kw("PRIOR") || w.kw("BACKWARD") || w.kw("FIRST") || w.kw("LAST") || w.kw("ABSOLUTE") {
                let _ = w.kw("ALL") || w.number().is_some();
                Count::Backward
            } else {
                w.count()
            };
            let _ = w.kw("FROM") || w.kw("IN");
            let name = w.ident().ok_or_else(|| syntax(text))?;
            Command::Fetch { name, count, is_move: first == "MOVE" }
        }
        _ => return Ok(None),
    };
    Ok(Some(cmd))
}

fn parse_set(w: &mut Words, text: &str) -> Result<Command> {
    if w.peek_kw().as_deref() == Some("SESSION")
        && !matches!(w.peek_kw_at(1).as_deref(), Some("CHARACTERISTICS" | "AUTHORIZATION"))
    {
        w.pos += 1;
    } else {
        let _ = w.kw("LOCAL");
    }
    if w.kws(&["SESSION", "CHARACTERISTICS"]) || w.kw("TRANSACTION") {
        // Transaction modes: isolation levels and READ ONLY/WRITE; lakecube reads a snapshot
        // of the lake per query whatever the level.
        return Ok(Command::SetAccepted { tag: "SET" });
    }
    if w.kws(&["SESSION", "AUTHORIZATION"]) {
        let v = w.role_name().ok_or_else(|| syntax(text))?;
        return Ok(Command::Set { name: "session_authorization".into(), value: default_or(v) });
    }
    if w.kw("ROLE") {
        let v = w.role_name().ok_or_else(|| syntax(text))?;
        return Ok(Command::Set { name: "role".into(), value: Some(v) });
    }
    if w.kws(&["TIME", "ZONE"]) {
        let v = w.value().ok_or_else(|| syntax(text))?;
        return Ok(Command::Set { name: "TimeZone".into(), value: default_or(v) });
    }
    if w.kw("NAMES") {
        let v = w.value().ok_or_else(|| syntax(text))?;
        return Ok(Command::Set { name: "client_encoding".into(), value: default_or(v) });
    }
    let name = w.name().ok_or_else(|| syntax(text))?;
    if !(w.kw("TO") || matches!(w.toks.get(w.pos), Some((Token::Eq, _)))) {
        return Err(syntax(text));
    }
    if matches!(w.toks.get(w.pos), Some((Token::Eq, _))) {
        w.pos += 1;
    }
    let v = w.value().ok_or_else(|| syntax(text))?;
    Ok(Command::Set { name, value: default_or(v) })
}

fn default_or(v: String) -> Option<String> {
    (!v.eq_ignore_ascii_case("default")).then_some(v)
}

/// What a statement produced.
pub enum Outcome {
    /// An empty statement.
    Empty,
    /// A command tag, with the settings to report in ParameterStatus.
    Done { tag: Tag, report: Vec<(String, String)> },
    /// Rows.
    Rows(QueryResponse),
    /// Rows copied out (`COPY … TO STDOUT`).
    Copy(super::copy::CopyOut),
}


/// The columns a session statement returns (SHOW, FETCH), known before it runs.
pub fn command_columns(command: &Command, session: &Session) -> Option<SchemaRef> {
    use datafusion::arrow::datatypes::{Field, Schema};
    match command {
        Command::Show(name) => {
            let col = crate::pg::settings::canonical_name(name).map(str::to_string).unwrap_or_else(|| name.clone());
            Some(Arc::new(Schema::new(vec![Field::new(col, DataType::Utf8, true)])))
        }
        Command::ShowAll => Some(Arc::new(Schema::new(
            ["name", "setting", "description"].map(|n| Field::new(n, DataType::Utf8, true)).to_vec(),
        ))),
        Command::Fetch { name, is_move: false, .. } => session.cursors.get(name).map(|c| c.schema.clone()),
        _ => None,
    }
}

fn no_cursor(name: &str) -> Error {
    Error::new(ErrorKind::InvalidCursorName, format!("cursor \"{name}\" does not exist"))
}

/// The ParameterStatus a SET/RESET of `name` reports, if PostgreSQL reports that setting.
fn reported(session: &Session, name: &str) -> Vec<(String, String)> {
    match crate::pg::settings::canonical_name(name) {
        Some(n) if REPORTED.contains(&n) => vec![(n.to_string(), session.settings.get(n).unwrap_or_default())],
        _ => Vec::new(),
    }
}

/// A small result of text values (SHOW).
fn rows_response(schema: &SchemaRef, rows: Vec<Vec<Option<String>>>, format: &Format, tag: &str) -> Result<Outcome, Error> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    let cols: Vec<ArrayRef> = (0..schema.fields().len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(schema.clone(), cols)?;
    let fields = Arc::new(field_infos(schema, format));
    let data = encode_batch(&batch, &fields).map_err(|e| Error::internal(e.to_string()))?;
    let mut resp = QueryResponse::new(fields, futures::stream::iter(data.into_iter().map(Ok)));
    resp.set_command_tag(tag);
    Ok(Outcome::Rows(resp))
}

/// What a command reads and changes of its connection.
pub struct Context<'a> {
    pub engine: &'a Engine,
    pub session: &'a mut Session,
    /// The transaction status before the command; the command sets the one after it.
    pub status: &'a mut TransactionStatus,
    /// The result format the client asked for.
    pub format: &'a Format,
    /// A `DECLARE`'s query as planned at Parse, and the parameter values bound to it.
    pub declared: Option<Planned>,
    pub params: Option<ParamValues>,
    pub token: &'a CancellationToken,
    pub clock: &'a Arc<Clock>,
    pub timeout: u64,
}

impl Command {
    /// Applies the command to its session.
    pub async fn apply(self, cx: Context<'_>) -> Result<Outcome> {
        let Context { engine, session, status, format, declared, params, token, clock, timeout } = cx;
        let command = self;
        let in_block = *status != TransactionStatus::Idle;
        let tag = |t: &str| Ok(Outcome::Done { tag: Tag::new(t), report: Vec::new() });
        let block_only = |what: &str| {
            Error::new(ErrorKind::NoActiveTransaction, format!("{what} can only be used in transaction blocks"))
                .with_hint("start one with BEGIN")
        };
        match command {
            Command::Begin => {
                *status = TransactionStatus::Transaction;
                tag("BEGIN")
            }
            Command::Commit => {
                let t = if *status == TransactionStatus::Error { "ROLLBACK" } else { "COMMIT" };
                session.end_transaction();
                *status = TransactionStatus::Idle;
                tag(t)
            }
            Command::Rollback => {
                session.end_transaction();
                *status = TransactionStatus::Idle;
                tag("ROLLBACK")
            }
            Command::RollbackTo => {
                if !in_block {
                    return Err(block_only("ROLLBACK TO SAVEPOINT"));
                }
                *status = TransactionStatus::Transaction;
                tag("ROLLBACK")
            }
            Command::Savepoint | Command::Release => {
                let what = if command == Command::Savepoint { "SAVEPOINT" } else { "RELEASE SAVEPOINT" };
                if !in_block {
                    return Err(block_only(what));
                }
                tag(if command == Command::Savepoint { "SAVEPOINT" } else { "RELEASE" })
            }
            Command::Set { name, value } => {
                match &value {
                    Some(v) => session.settings.set(&name, v),
                    None => session.settings.reset(&name),
                }
                .map_err(Error::from)?;
                let report = reported(session, &name);
                Ok(Outcome::Done { tag: Tag::new("SET"), report })
            }
            Command::SetAccepted { tag: t } => tag(t),
            Command::Reset(name) => {
                session.settings.reset(&name).map_err(Error::from)?;
                let report = reported(session, &name);
                Ok(Outcome::Done { tag: Tag::new("RESET"), report })
            }
            Command::ResetAll => {
                session.reset_all();
                tag("RESET")
            }
            Command::Discard { all } => {
                if all {
                    if in_block {
                        return Err(Error::new(ErrorKind::ActiveTransaction, "DISCARD ALL cannot run inside a transaction block"));
                    }
                    session.reset_all();
                    session.cursors.clear();
                }
                tag(if all { "DISCARD ALL" } else { "DISCARD" })
            }
            Command::Deallocate(all) => tag(if all.is_none() { "DEALLOCATE ALL" } else { "DEALLOCATE" }),
            Command::Close(name) => {
                match name {
                    Some(n) => {
                        if session.cursors.remove(&n).is_none() {
                            return Err(no_cursor(&n));
                        }
                    }
                    None => session.cursors.clear(),
                }
                tag("CLOSE CURSOR")
            }
            Command::Unlisten => tag("UNLISTEN"),
            Command::Show(name) => {
                let value = session.settings.get(&name).ok_or_else(|| {
                    Error::from(crate::pg::settings::SetError::Unknown(name.clone()))
                })?;
                let schema = command_columns(&Command::Show(name), session).expect("SHOW has columns");
                rows_response(&schema, vec![vec![Some(value)]], format, "SHOW")
            }
            Command::ShowAll => {
                let schema = command_columns(&Command::ShowAll, session).expect("SHOW ALL has columns");
                let rows = session.settings.all().into_iter().map(|(n, v, d)| vec![Some(n), Some(v), Some(d)]).collect();
                rows_response(&schema, rows, format, "SHOW")
            }
            Command::Declare { name, binary, hold, scroll, query } => {
                if !hold && !in_block {
                    return Err(block_only("DECLARE CURSOR"));
                }
                if scroll {
                    return Err(Error::new(ErrorKind::FeatureNotSupported, "SCROLL cursors are not supported")
                        .with_hint("lakecube cursors read forward only; declare the cursor NO SCROLL"));
                }
                if session.cursors.contains_key(&name) {
                    return Err(Error::new(ErrorKind::InvalidCursorName, format!("cursor \"{name}\" already exists")));
                }
                if session.cursors.len() >= MAX_CURSORS {
                    return Err(Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        format!("too many open cursors: a session may have {} at once", MAX_CURSORS),
                    )
                    .with_hint("CLOSE the cursors you are done with (or CLOSE ALL)"));
                }
                if parse_command(&query)?.is_some() {
                    return Err(Error::new(ErrorKind::Syntax, "a cursor is declared FOR a query"));
                }
                // Over the extended protocol the query was planned at Parse (for its
                // parameters); a simple query plans it now.
                let planned = match declared {
                    Some(p) => p,
                    None => plan_in_task(engine, &query, session.info(), token, clock, timeout)
                        .await?
                        .ok_or_else(|| Error::new(ErrorKind::Syntax, "a cursor is declared FOR a query"))?,
                };
                let planned = planned.bind(params)?;
                let (schema, stream) = bounded(engine.execute_planned(planned), token, clock, timeout).await?;
                session.cursors.insert(name, Cursor::new(schema, stream, binary, hold));
                tag("DECLARE CURSOR")
            }
            Command::Fetch { name, count, is_move } => {
                let cursor = session.cursors.get(&name).ok_or_else(|| no_cursor(&name))?;
                let n = match count {
                    Count::Rows(n) => Some(n),
                    Count::All => None,
                    Count::Backward => {
                        return Err(Error::new(ErrorKind::FeatureNotSupported, "cursor can only scan forward")
                            .with_hint("lakecube cursors read forward only: FETCH NEXT, FETCH n, FETCH ALL"));
                    }
                };
                let batches = cursor.rows(n);
                if is_move {
                    let counted = async {
                        let mut rows = 0usize;
                        futures::pin_mut!(batches);
                        while let Some(b) = batches.next().await {
                            rows += b?.num_rows();
                        }
                        Ok(rows)
                    };
                    let rows = bounded(counted, token, clock, timeout).await?;
                    return tag(&format!("MOVE {rows}"));
                }
                // Rows stream to the client as the cursor reads them, under the statement's
                // timeout and cancel, one batch in memory at a time.
                let format = if cursor.binary { Format::UnifiedBinary } else { format.clone() };
                let fields = Arc::new(field_infos(&cursor.schema, &format));
                let rows = data_rows(batches, fields.clone(), token.clone(), clock.clone(), timeout, None);
                let mut resp = QueryResponse::new(fields, rows);
                resp.set_command_tag("FETCH");
                Ok(Outcome::Rows(resp))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_statements() {
        let c = |s: &str| parse_command(s).unwrap();
        assert_eq!(c("SET extra_float_digits = 3"), Some(Command::Set { name: "extra_float_digits".into(), value: Some("3".into()) }));
        assert_eq!(c("set search_path to public, \"$user\""), Some(Command::Set { name: "search_path".into(), value: Some("public, $user".into()) }));
        assert_eq!(c("SET SESSION TIMEZONE TO 'UTC'"), Some(Command::Set { name: "timezone".into(), value: Some("UTC".into()) }));
        assert_eq!(c("SET TIME ZONE DEFAULT"), Some(Command::Set { name: "TimeZone".into(), value: None }));
        assert_eq!(c("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"), Some(Command::SetAccepted { tag: "SET" }));
        // Role names fold to lower case unless quoted; DEFAULT resets the authorization.
        assert_eq!(c("SET ROLE Analyst"), Some(Command::Set { name: "role".into(), value: Some("analyst".into()) }));
        assert_eq!(c("set role \"Head Office\";"), Some(Command::Set { name: "role".into(), value: Some("Head Office".into()) }));
        assert_eq!(c("SET SESSION ROLE 'x'"), Some(Command::Set { name: "role".into(), value: Some("x".into()) }));
        assert_eq!(c("SET SESSION AUTHORIZATION DEFAULT"), Some(Command::Set { name: "session_authorization".into(), value: None }));
        assert_eq!(c("RESET ROLE"), Some(Command::Reset("role".into())));
        assert!(parse_command("SET ROLE a b").is_err());
        assert_eq!(c("show transaction isolation level"), Some(Command::Show("transaction_isolation".into())));
        assert_eq!(c("START TRANSACTION READ ONLY"), Some(Command::Begin));
        assert_eq!(c("ROLLBACK TO SAVEPOINT _pg3_1"), Some(Command::RollbackTo));
        assert_eq!(
            c("declare \"SQL_CUR0x1\" cursor with hold for SELECT 1 "),
            Some(Command::Declare { name: "SQL_CUR0x1".into(), binary: false, hold: true, scroll: false, query: "SELECT 1".into() })
        );
        assert_eq!(c("fetch 2048 in \"SQL_CUR0x1\""), Some(Command::Fetch { name: "SQL_CUR0x1".into(), count: Count::Rows(2048), is_move: false }));
        assert_eq!(c("FETCH FORWARD ALL FROM c"), Some(Command::Fetch { name: "c".into(), count: Count::All, is_move: false }));
        assert_eq!(c("MOVE PRIOR IN c"), Some(Command::Fetch { name: "c".into(), count: Count::Backward, is_move: true }));
        assert_eq!(c("SELECT 1"), None);
        assert_eq!(c("WITH x AS (SELECT 1) SELECT * FROM x"), None);
        assert!(parse_command("SET = 3").is_err());
    }
}
