//! A connection's session: the statements PostgreSQL answers without a query plan (`SET`,
//! `SHOW`, `BEGIN`, `DECLARE … CURSOR`, `FETCH`, …), the settings they change, the open
//! cursors and the transaction block state.
//!
//! lakecube is read-only, so a transaction block changes nothing but what PostgreSQL clients
//! observe: the status byte in ReadyForQuery, "commands ignored until end of transaction block"
//! after an error, and cursors without `WITH HOLD` closing at its end. Clients depend on all
//! three (psycopg and pgjdbc track the status byte; Tableau reads every result through a cursor).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use futures::StreamExt;

use crate::engine::settings::Settings;
use crate::engine::sql::{LineIndex, SessionInfo};
use crate::error::{Error, ErrorKind, Result};

/// Splits a simple-query message into its statements' texts (`;` outside quotes, comments
/// and dollar-quoted strings); statements with only whitespace or comments are dropped.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = tokenize(sql)?;
    let offsets = LineIndex::new(sql);
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut has_content = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = offsets.byte(&t.span.start);
                if has_content {
                    out.push(sql[start..end].trim().to_string());
                }
                start = end + 1;
                has_content = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_content = true,
        }
    }
    if has_content {
        out.push(sql[start..].trim().to_string());
    }
    Ok(out)
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(ErrorKind::Syntax, format!("syntax error: {e}")))
}

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
    /// `SET` forms that only remember a value or are accepted as they are (transaction
    /// characteristics, `SET ROLE`, `SET SESSION AUTHORIZATION DEFAULT`).
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

    fn rest_from(&self, text: &str) -> String {
        self.toks.get(self.pos).map(|(_, at)| text[*at..].trim().to_string()).unwrap_or_default()
    }
}

fn syntax(text: &str) -> Error {
    Error::new(ErrorKind::Syntax, format!("syntax error in \"{}\"", one_line(text)))
}

/// A statement on one line, whitespace runs collapsed (for messages and logs).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
            } else if w.kws(&["SESSION", "AUTHORIZATION"]) || w.kw("ROLE") {
                Command::SetAccepted { tag: "RESET" }
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
    if w.kws(&["SESSION", "AUTHORIZATION"]) || w.kw("ROLE") {
        return Ok(Command::SetAccepted { tag: "SET" });
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

/// An open cursor: its result stream, read forward on demand.
pub struct Cursor {
    pub schema: SchemaRef,
    pub binary: bool,
    pub hold: bool,
    reader: Arc<tokio::sync::Mutex<Reader>>,
}

/// A cursor's stream and the rest of a batch a FETCH cut.
struct Reader {
    stream: Option<SendableRecordBatchStream>,
    buffered: VecDeque<RecordBatch>,
}

impl Reader {
    /// The next batch of at most `want` rows; `None` at the end.
    async fn next_batch(&mut self, want: u64) -> Result<Option<RecordBatch>> {
        let batch = match self.buffered.pop_front() {
            Some(b) => b,
            None => match self.stream.as_mut() {
                Some(s) => match s.next().await {
                    Some(b) => b.map_err(Error::from)?,
                    None => {
                        self.stream = None;
                        return Ok(None);
                    }
                },
                None => return Ok(None),
            },
        };
        let rows = batch.num_rows() as u64;
        if rows <= want {
            return Ok(Some(batch));
        }
        self.buffered.push_front(batch.slice(want as usize, (rows - want) as usize));
        Ok(Some(batch.slice(0, want as usize)))
    }
}

impl Cursor {
    pub fn new(schema: SchemaRef, stream: SendableRecordBatchStream, binary: bool, hold: bool) -> Cursor {
        let reader = Reader { stream: Some(stream), buffered: VecDeque::new() };
        Cursor { schema, binary, hold, reader: Arc::new(tokio::sync::Mutex::new(reader)) }
    }

    /// Up to `n` rows (all that remain for `None`), read batch by batch as the stream is
    /// polled: a `FETCH ALL` holds one batch at a time, never the whole result. The cursor is
    /// locked for one batch at a time, so a FETCH left suspended in a portal never blocks the
    /// next FETCH of the same cursor.
    pub fn rows(&self, n: Option<u64>) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
        let start: (Arc<tokio::sync::Mutex<Reader>>, u64) = (self.reader.clone(), n.unwrap_or(u64::MAX));
        futures::stream::unfold(start, |(reader, want)| async move {
            if want == 0 {
                return None;
            }
            let next = reader.lock().await.next_batch(want).await;
            match next {
                Ok(Some(b)) => {
                    let left = want - b.num_rows() as u64;
                    Some((Ok(b), (reader, left)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), (reader, 0))),
            }
        })
    }
}

/// One connection's session state.
pub struct Session {
    pub user: String,
    pub settings: Settings,
    /// Settings given at startup, kept by `RESET ALL` / `DISCARD ALL`.
    pub startup: Vec<(String, String)>,
    pub cursors: HashMap<String, Cursor>,
}

/// Cursors one session may have open at once.
pub const MAX_CURSORS: usize = 64;

impl Session {
    /// A session for `user` with its startup parameters, on the server's default settings.
    pub fn new(user: String, startup: &HashMap<String, String>, defaults: std::sync::Arc<std::collections::BTreeMap<String, String>>) -> Session {
        let mut settings = Settings::with_server_defaults(defaults);
        let mut kept = Vec::new();
        let mut params: Vec<(String, String)> = startup.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // `options=-c name=value -c …` (libpq's PGOPTIONS).
        if let Some(opts) = startup.get("options") {
            let mut parts = opts.split_whitespace();
            while let Some(p) = parts.next() {
                let kv = if p == "-c" { parts.next() } else { p.strip_prefix("--").or_else(|| p.strip_prefix("-c")) };
                if let Some((k, v)) = kv.and_then(|kv| kv.split_once('=')) {
                    params.push((k.replace('-', "_"), v.to_string()));
                }
            }
        }
        for (k, v) in params {
            if matches!(k.as_str(), "user" | "database" | "options" | "replication") {
                continue;
            }
            // Unknown startup parameters are ignored, as the issue of any driver's extra
            // parameters (ssl_renegotiation_limit, …) must not fail a connection.
            if settings.set(&k, &v).is_ok() {
                kept.push((k, v));
            }
        }
        let _ = settings.set("session_authorization", &user);
        Session { user, settings, startup: kept, cursors: HashMap::new() }
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo { user: self.user.clone(), settings: self.settings.clone() }
    }

    /// `RESET ALL`: back to the defaults and what the connection was opened with.
    pub fn reset_all(&mut self) {
        self.settings = Settings::with_server_defaults(self.settings.server_defaults());
        for (k, v) in &self.startup {
            let _ = self.settings.set(k, v);
        }
        let _ = self.settings.set("session_authorization", &self.user);
    }

    /// End of a transaction block: cursors without WITH HOLD close.
    pub fn end_transaction(&mut self) {
        self.cursors.retain(|_, c| c.hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = split_statements("SET a = 'x;y'; -- c;\nSELECT $$;$$ ; ;  /* ; */ select 1").unwrap();
        assert_eq!(s, vec!["SET a = 'x;y'", "-- c;\nSELECT $$;$$", "/* ; */ select 1"]);
        assert!(split_statements(" ; -- only a comment").unwrap().is_empty());
    }

    #[test]
    fn session_statements() {
        let c = |s: &str| parse_command(s).unwrap();
        assert_eq!(c("SET extra_float_digits = 3"), Some(Command::Set { name: "extra_float_digits".into(), value: Some("3".into()) }));
        assert_eq!(c("set search_path to public, \"$user\""), Some(Command::Set { name: "search_path".into(), value: Some("public, $user".into()) }));
        assert_eq!(c("SET SESSION TIMEZONE TO 'UTC'"), Some(Command::Set { name: "timezone".into(), value: Some("UTC".into()) }));
        assert_eq!(c("SET TIME ZONE DEFAULT"), Some(Command::Set { name: "TimeZone".into(), value: None }));
        assert_eq!(c("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"), Some(Command::SetAccepted { tag: "SET" }));
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
