//! What bounds a running statement: its cancel token (CancelRequest, a client that went
//! away), its clock and `statement_timeout`; planning in a task of its own; rows streamed to
//! the client under those bounds, one batch at a time, with the query's log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::FieldInfo;
use pgwire::error::PgWireResult;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

use super::encode::{encode_batch, to_pg_error};
use crate::engine::{Engine, Planned};
use crate::error::{Error, ErrorKind};
use crate::pg::parse::one_line;
use crate::pg::settings::SessionInfo;

/// The running statement of each connection, by backend pid, for CancelRequest.
#[derive(Default)]
pub struct Cancels {
    by_pid: std::sync::Mutex<HashMap<i32, (SecretKey, CancellationToken)>>,
}

impl Cancels {
    /// A fresh token for the statement a connection starts now.
    pub fn start(&self, pid: i32, secret: &SecretKey) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut m) = self.by_pid.lock() {
            m.insert(pid, (secret.clone(), token.clone()));
        }
        token
    }

    /// A CancelRequest read by hand (the server refusing new connections): cancels the
    /// statement of `pid` if `key` is its secret.
    pub fn cancel_with_key(&self, pid: i32, key: &[u8]) {
        let token = self.by_pid.lock().ok().and_then(|m| m.get(&pid).filter(|(s, _)| s.to_bytes().as_ref() == key).map(|(_, t)| t.clone()));
        if let Some(t) = token {
            tracing::info!(pid, "cancel request");
            t.cancel();
        }
    }

    /// Cancels the statement a connection is running (its client went away).
    pub fn cancel(&self, pid: i32) {
        if let Some(token) = self.by_pid.lock().ok().and_then(|m| m.get(&pid).map(|(_, t)| t.clone())) {
            token.cancel();
        }
    }

    pub fn forget(&self, pid: i32) {
        if let Ok(mut m) = self.by_pid.lock() {
            m.remove(&pid);
        }
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, req: pgwire::messages::cancel::CancelRequest) {
        // The key may arrive decoded as bytes: compare by value.
        let token = self.by_pid.lock().ok().and_then(|m| {
            m.get(&req.pid).filter(|(s, _)| s.eq_value(&req.secret_key)).map(|(_, t)| t.clone())
        });
        if let Some(t) = token {
            tracing::info!(pid = req.pid, "cancel request");
            t.cancel();
        }
    }
}

/// When the statement running on a connection began: `statement_timeout` counts from there.
/// PostgreSQL counts each Execute of a paged portal afresh, and so does this: a portal's rows
/// stream under the clock of the Execute that asks for them, not of the first one.
#[derive(Debug)]
pub struct Clock(std::sync::Mutex<tokio::time::Instant>);

impl Clock {
    pub fn new() -> Arc<Clock> {
        Arc::new(Clock(std::sync::Mutex::new(tokio::time::Instant::now())))
    }

    /// A statement (or an Execute) starts now.
    pub fn restart(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = tokio::time::Instant::now();
        }
    }

    /// The deadline of a statement with this timeout (none for 0).
    pub fn deadline(&self, timeout_ms: u64) -> Option<tokio::time::Instant> {
        let started = self.0.lock().map(|t| *t).unwrap_or_else(|_| tokio::time::Instant::now());
        (timeout_ms > 0).then(|| started + std::time::Duration::from_millis(timeout_ms))
    }
}

/// Waits for what is asked, unless the statement is cancelled or its time runs out first.
pub async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, Error>>,
    token: &CancellationToken,
    clock: &Clock,
    timeout_ms: u64,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        _ = token.cancelled() => Err(canceled()),
        _ = sleep_until(clock.deadline(timeout_ms)) => Err(timed_out()),
        r = fut => r,
    }
}

/// Batches as DataRows, encoded one batch at a time as the client reads them; a cancel
/// request or the statement's timeout (counted from its clock, so each Execute of a paged
/// portal afresh) ends the stream with an error.
pub fn data_rows(
    batches: impl futures::Stream<Item = Result<RecordBatch, Error>> + Send + 'static,
    fields: Arc<Vec<FieldInfo>>,
    token: CancellationToken,
    clock: Arc<Clock>,
    timeout_ms: u64,
    log: Option<Arc<QueryLog>>,
) -> impl futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + 'static {
    guarded(batches, token, clock, timeout_ms).flat_map(move |batch| {
        let out: Vec<PgWireResult<_>> = match batch {
            Ok(b) => match encode_batch(&b, &fields) {
                Ok(rows) => {
                    if let Some(log) = &log {
                        log.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    }
                    rows.into_iter().map(Ok).collect()
                }
                Err(e) => vec![Err(e)],
            },
            Err(e) => vec![Err(to_pg_error(e))],
        };
        if let (Some(log), Some(Err(pgwire::error::PgWireError::UserError(info)))) = (&log, out.last()) {
            log.failed(&info.code, &info.message);
        }
        futures::stream::iter(out)
    })
}

/// Batches under a statement's bounds: a cancel request or its timeout (counted from its
/// clock) ends the stream with an error, after which it ends.
pub fn guarded(
    batches: impl futures::Stream<Item = Result<RecordBatch, Error>> + Send + 'static,
    token: CancellationToken,
    clock: Arc<Clock>,
    timeout_ms: u64,
) -> impl futures::Stream<Item = Result<RecordBatch, Error>> + Send + 'static {
    futures::stream::unfold((Box::pin(batches), false), move |(mut stream, done)| {
        let (token, clock) = (token.clone(), clock.clone());
        async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                biased;
                _ = token.cancelled() => Err(canceled()),
                _ = sleep_until(clock.deadline(timeout_ms)) => Err(timed_out()),
                b = stream.next() => Ok(b),
            };
            match next {
                Ok(Some(b)) => Some((b, (stream, false))),
                Ok(None) => None,
                Err(e) => Some((Err(e), (stream, true))),
            }
        }
    })
}

/// Plans a statement in a task of its own, so that its statement_timeout and a cancel
/// request stop waiting for it even while planning keeps a worker busy; the planning is
/// aborted (at its next await) when it loses the race.
pub async fn plan_in_task(
    engine: &Engine,
    sql: &str,
    info: SessionInfo,
    token: &CancellationToken,
    clock: &Clock,
    timeout_ms: u64,
) -> Result<Option<Planned>, Error> {
    // A plan the cache holds is taken here: a task of its own would cost a hand-off between
    // threads, most of a `SELECT 1` round trip once its rows are kept (engine::constant).
    if let Some(planned) = engine.cached_plan(sql, &info)? {
        return Ok(Some(planned));
    }
    let (engine, sql) = (engine.clone(), sql.to_string());
    let task = tokio::spawn(async move { engine.plan_uncached(&sql, &info).await });
    let abort = task.abort_handle();
    let planned = bounded(
        async move { task.await.map_err(|e| Error::internal(format!("planning stopped: {e}")))? },
        token,
        clock,
        timeout_ms,
    )
    .await;
    abort.abort();
    planned
}

/// Sleeps until the deadline; never wakes without one.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

pub fn canceled() -> Error {
    Error::new(ErrorKind::QueryCanceled, "canceling statement due to user request")
}

pub fn timed_out() -> Error {
    Error::new(ErrorKind::QueryCanceled, "canceling statement due to statement timeout")
        .with_hint("raise statement_timeout (SET statement_timeout = '5min') or narrow the query")
}

/// Logs one line per query when its result stream is dropped (finished, failed or
/// abandoned), and writes its audit record.
pub struct QueryLog {
    pub sql: String,
    pub client: String,
    pub start: Instant,
    pub rows: AtomicU64,
    /// Who ran it, for the audit log, and the bytes its scans read.
    pub audited: Option<(Audited, crate::engine::Meter)>,
    /// The error that ended its rows early (SQLSTATE, message).
    pub failure: std::sync::Mutex<Option<(String, String)>>,
}

impl QueryLog {
    /// Notes the error that ended the rows.
    pub fn failed(&self, sqlstate: &str, message: &str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((sqlstate.to_string(), message.to_string()));
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        let rows = self.rows.load(Ordering::Relaxed);
        tracing::info!(
            client = %self.client,
            rows,
            ms = format!("{:.1}", self.start.elapsed().as_secs_f64() * 1000.0),
            sql = %one_line_short(&self.sql),
            "query"
        );
        if let Some((audited, meter)) = self.audited.take() {
            let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
            audited.record(&self.sql, rows, meter.bytes(), failure);
        }
    }
}

/// Who runs a statement, for its audit record: the session's user, the role taken, the
/// application, the client's address, when it began and the rollups that answer it.
#[derive(Clone)]
pub struct Audited {
    pub log: Arc<crate::audit::AuditLog>,
    pub user: String,
    pub role: Option<String>,
    pub application_name: String,
    pub client: String,
    pub start: Instant,
    pub rollups: Vec<String>,
}

impl Audited {
    pub fn new(log: Arc<crate::audit::AuditLog>, user: &str, settings: &crate::pg::settings::Settings, client: &str) -> Audited {
        Audited {
            log,
            user: user.to_string(),
            role: settings.role(),
            application_name: settings.get("application_name").unwrap_or_default(),
            client: client.to_string(),
            start: Instant::now(),
            rollups: Vec::new(),
        }
    }

    /// Writes the statement's record: `failure` is its SQLSTATE and message, `None` for
    /// success.
    pub fn record(self, sql: &str, rows: u64, bytes_read: u64, failure: Option<(String, String)>) {
        let (sqlstate, message) = match failure {
            Some((code, message)) => (code, Some(message)),
            None => ("00000".to_string(), None),
        };
        self.log.record(crate::audit::Record {
            time: chrono::Utc::now(),
            kind: "statement",
            user: self.user,
            role: self.role,
            client: self.client,
            application_name: self.application_name,
            statement: sql.to_string(),
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            rows,
            bytes_read,
            rollups: self.rollups,
            sqlstate,
            message,
        });
    }
}

/// A statement on one line for the query log, cut at 300 bytes. (A failed statement is
/// logged whole: it is what a maintainer needs to reproduce it.)
pub fn one_line_short(sql: &str) -> String {
    let s = one_line(sql);
    if s.len() > 300 { format!("{}…", &s[..s.floor_char_boundary(300)]) } else { s }
}

