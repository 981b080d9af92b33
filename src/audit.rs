//! The audit log: one record per statement a client runs (who, as which role, from where,
//! with which application, what, how long, how many rows, how many bytes read from the lake,
//! from which rollups, and its SQLSTATE), and one per login, failed or not
//! (docs/security.md). Records are JSON lines in daily files (`audit.YYYY-MM-DD.jsonl`,
//! rotated by tracing-appender, the oldest removed past `keep_files`), and the latest
//! `memory` of them are kept for the `lakecube.query_log` table.
//!
//! With `redact: literals`, string and number literals of the statement text are written as
//! `?` (a name typed in a filter is personal data in some shops); the statement's shape
//! stays.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

use crate::error::{Error, Result};

/// One audited event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    /// When it ended (UTC, RFC 3339 with microseconds).
    pub time: chrono::DateTime<chrono::Utc>,
    /// `statement`, `login` or `login_failed`.
    pub kind: &'static str,
    pub user: String,
    /// The role taken with `SET ROLE`, if any.
    pub role: Option<String>,
    /// The client's address and port.
    pub client: String,
    pub application_name: String,
    /// The statement as sent (literals redacted if so configured); empty for a login.
    pub statement: String,
    pub duration_ms: f64,
    pub rows: u64,
    /// Bytes of Parquet read from the lake and its rollups.
    pub bytes_read: u64,
    /// The rollups that answered (empty: the lake, or no cube).
    pub rollups: Vec<String>,
    /// `00000` for success.
    pub sqlstate: String,
    /// The error's message, for a failure.
    pub message: Option<String>,
}

/// How the statement text is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redaction {
    /// As sent.
    #[default]
    None,
    /// String and number literals as `?`.
    Literals,
}

/// Where and how the audit log is kept.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder of the daily JSON-lines files; `None`: memory only.
    pub dir: Option<std::path::PathBuf>,
    /// How many daily files are kept.
    pub keep_files: usize,
    /// How many of the latest records `lakecube.query_log` shows.
    pub memory: usize,
    pub redact: Redaction,
}

impl Default for Options {
    fn default() -> Self {
        Options { dir: None, keep_files: 30, memory: 10_000, redact: Redaction::None }
    }
}

/// The audit log of one server.
pub struct AuditLog {
    recent: Mutex<VecDeque<Record>>,
    memory: usize,
    redact: Redaction,
    file: Option<Mutex<tracing_appender::rolling::RollingFileAppender>>,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog { recent: Mutex::new(VecDeque::new()), memory: Options::default().memory, redact: Redaction::None, file: None }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("memory", &self.memory).field("file", &self.file.is_some()).finish()
    }
}

impl AuditLog {
    pub fn open(options: &Options) -> Result<AuditLog> {
        let file = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(format!("audit.dir {}: {e}", dir.display())).with_hint("the audit log's folder must be writable by the server")
                })?;
                let appender = tracing_appender::rolling::Builder::new()
                    .rotation(tracing_appender::rolling::Rotation::DAILY)
                    .filename_prefix("audit")
                    .filename_suffix("jsonl")
                    .max_log_files(options.keep_files.max(1))
                    .build(dir)
                    .map_err(|e| Error::config(format!("audit.dir {}: {e}", dir.display())))?;
                Some(Mutex::new(appender))
            }
            None => None,
        };
        Ok(AuditLog { recent: Mutex::new(VecDeque::new()), memory: options.memory, redact: options.redact, file })
    }

    /// Keeps a record (its statement redacted as configured) and writes it out. A write
    /// that fails is reported in the server log; the statement is not failed for it.
    pub fn record(&self, mut record: Record) {
        if self.redact == Redaction::Literals {
            record.statement = redact_literals(&record.statement);
            // Errors echo values too (a cast, a setting).
            record.message = record.message.as_deref().map(redact_literals);
        }
        // A statement may be as large as a message (64 MiB by default): the record keeps its
        // beginning, so that no client can fill the server's memory or disk through the log.
        record.statement = bounded(record.statement);
        record.message = record.message.map(bounded);
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&record).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = f.write_all(&line).and_then(|_| f.flush()) {
                tracing::error!(error = %e, "cannot write the audit log");
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= self.memory {
            recent.pop_front();
        }
        if self.memory > 0 {
            recent.push_back(record);
        }
    }

    /// The latest records, oldest first.
    pub fn recent(&self) -> Vec<Record> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// The columns of `lakecube.query_log`.
    pub fn schema() -> SchemaRef {
        let text = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            text("kind", false),
            text("user_name", false),
            text("role", true),
            text("client", false),
            text("application_name", false),
            text("statement", false),
            Field::new("duration_ms", DataType::Float64, false),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes_read", DataType::UInt64, false),
            text("rollups", false),
            text("sqlstate", false),
            text("message", true),
        ]))
    }

    /// The latest records as one batch of [`AuditLog::schema`].
    pub fn batch(&self) -> Result<RecordBatch> {
        let r = self.recent();
        let texts = |f: &dyn Fn(&Record) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from(r.iter().map(f).collect::<Vec<_>>())) };
        Ok(RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(r.iter().map(|x| x.time.timestamp_micros()).collect::<Vec<_>>())),
                texts(&|x| Some(x.kind.to_string())),
                texts(&|x| Some(x.user.clone())),
                texts(&|x| x.role.clone()),
                texts(&|x| Some(x.client.clone())),
                texts(&|x| Some(x.application_name.clone())),
                texts(&|x| Some(x.statement.clone())),
                Arc::new(Float64Array::from(r.iter().map(|x| x.duration_ms).collect::<Vec<_>>())),
                Arc::new(UInt64Array::from(r.iter().map(|x| x.rows).collect::<Vec<_>>())),
                Arc::new(UInt64Array::from(r.iter().map(|x| x.bytes_read).collect::<Vec<_>>())),
                texts(&|x| Some(x.rollups.join(","))),
                texts(&|x| Some(x.sqlstate.clone())),
                texts(&|x| x.message.clone()),
            ],
        )?)
    }
}

/// The most bytes of a statement or message a record keeps.
pub const MAX_TEXT: usize = 16 << 10;

/// `text` cut at [`MAX_TEXT`] bytes, saying how long it was.
fn bounded(text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    format!("{}… ({} bytes in all)", &text[..text.floor_char_boundary(MAX_TEXT)], text.len())
}

/// `sql` with its string and number literals as `?` (comments and layout kept); a text that
/// does not tokenize (an unterminated quote) is not kept at all.
pub fn redact_literals(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return format!("<not tokenized, {} bytes>", sql.len()) };
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::HexStringLiteral(_)
            | Token::UnicodeStringLiteral(_) => "?".to_string(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(statement: &str) -> Record {
        Record {
            time: chrono::Utc::now(),
            kind: "statement",
            user: "marc".into(),
            role: None,
            client: "127.0.0.1:5000".into(),
            application_name: "psql".into(),
            statement: statement.into(),
            duration_ms: 1.5,
            rows: 3,
            bytes_read: 0,
            rollups: vec![],
            sqlstate: "00000".into(),
            message: None,
        }
    }

    #[test]
    fn literals_are_redacted_and_the_shape_kept() {
        assert_eq!(
            redact_literals("SELECT SUM(x) FROM retail WHERE store_code = 'FR-PAR-001' AND n > 12.5 -- why"),
            "SELECT SUM(x) FROM retail WHERE store_code = ? AND n > ? -- why"
        );
        assert_eq!(redact_literals("SELECT $$secret$$, E'a\\nb'"), "SELECT ?, ?");
        assert_eq!(redact_literals("SELECT 'unterminated secret"), "<not tokenized, 27 bytes>");
        let long = bounded("x".repeat(MAX_TEXT + 10));
        assert!(long.len() < MAX_TEXT + 40 && long.ends_with(&format!("({} bytes in all)", MAX_TEXT + 10)), "{}", &long[long.len() - 40..]);
    }

    #[test]
    fn records_go_to_the_file_and_the_latest_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&Options { dir: Some(dir.path().to_path_buf()), keep_files: 2, memory: 2, redact: Redaction::Literals }).unwrap();
        for i in 0..3 {
            log.record(record(&format!("SELECT {i}")));
        }
        let kept: Vec<String> = log.recent().into_iter().map(|r| r.statement).collect();
        assert_eq!(kept, ["SELECT ?", "SELECT ?"]);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[2]["user"].as_str(), lines[2]["statement"].as_str(), lines[2]["rows"].as_u64()), (Some("marc"), Some("SELECT ?"), Some(3)));
        assert_eq!(log.batch().unwrap().num_rows(), 2);
    }
}
