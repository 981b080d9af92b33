//! pgwire handlers: startup, simple query and extended query, cancel requests, over an
//! [`Engine`]. Session statements (SET, BEGIN, DECLARE, FETCH, …) are answered by
//! [`super::session`]; everything else is planned by the engine.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::arrow::datatypes::SchemaRef;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rust_decimal::Decimal;

use super::encode::{canonical, encode_batch, field_infos};
use super::session::{Command, Count, Cursor, Session, one_line, parse_command, split_statements};
use crate::engine::{Engine, Planned};
use crate::telemetry::Metrics;
use crate::error::{Error, ErrorKind};

pub use crate::engine::settings::SERVER_VERSION;

/// Turns a lakecube error into a PostgreSQL ErrorResponse.
pub fn to_pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn error_info(e: Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.message);
    info.hint = e.hint;
    info.position = e.position.map(|p| p.to_string());
    info
}

/// All handlers of one server, shared by its connections.
pub struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Authenticator>,
    cancels: Arc<Cancels>,
}

/// The server-wide defaults of session settings (`statement_timeout`, …), from the config.
pub type SessionDefaults = Arc<std::collections::BTreeMap<String, String>>;

impl Handlers {
    /// Handlers for one server; with users, clients authenticate with SCRAM-SHA-256. An
    /// authenticated connection takes one of `slots` (53300 when none is left).
    pub fn new(
        engine: Engine,
        users: super::auth::Users,
        metrics: Arc<Metrics>,
        slots: Arc<tokio::sync::Semaphore>,
        defaults: SessionDefaults,
        tls_cert_pem: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let cancels = Arc::new(Cancels::default());
        let parser = Arc::new(Parser { engine: engine.clone(), cancels: cancels.clone(), metrics: metrics.clone(), defaults: defaults.clone() });
        let kind = if users.is_empty() {
            AuthKind::Trust(Startup)
        } else {
            let mut scram = pgwire::api::auth::sasl::scram::ScramAuth::new(Arc::new(users));
            scram.set_iterations(super::auth::ITERATIONS);
            if let Some(pem) = tls_cert_pem {
                scram.configure_certificate(pem).map_err(|e| {
                    Error::config(format!("TLS certificate for SCRAM channel binding: {e}"))
                        .with_hint("tls_cert must be a PEM certificate chain")
                })?;
            }
            AuthKind::Scram(
                pgwire::api::auth::sasl::SASLAuthStartupHandler::new(Arc::new(Parameters)).with_scram(scram),
            )
        };
        Ok(Handlers {
            backend: Arc::new(Backend { engine, parser, cancels: cancels.clone(), metrics, defaults }),
            startup: Arc::new(Authenticator { kind, slots }),
            cancels,
        })
    }

    /// Makes the session of a connection that just authenticated (with the server's defaults,
    /// so that its idle timeouts apply before its first statement).
    pub fn open_session<C: ClientInfo>(&self, client: &C) {
        let _ = session_of(client, &self.cancels, &self.backend.defaults);
    }

    /// The handlers with their concrete types, for the connection loop.
    pub fn parts(&self) -> (Arc<Authenticator>, Arc<Backend>, Arc<Cancels>) {
        (self.startup.clone(), self.backend.clone(), self.cancels.clone())
    }

    /// Whether clients authenticate with SASL (SCRAM), so that 'p' messages are SASL's.
    pub fn uses_sasl(&self) -> bool {
        matches!(self.startup.kind, AuthKind::Scram(_))
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

/// How clients prove who they are: loopback trust without users, SCRAM-SHA-256 with them.
pub enum AuthKind {
    Trust(Startup),
    Scram(pgwire::api::auth::sasl::SASLAuthStartupHandler<Parameters>),
}

/// Authentication, and the connection slot an authenticated client takes: a client that is
/// still connecting, or that never proves who it is, holds no slot.
pub struct Authenticator {
    kind: AuthKind,
    slots: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl StartupHandler for Authenticator {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut admitting = super::admit::Admitting::new(client, &self.slots);
        match &self.kind {
            AuthKind::Trust(t) => t.on_startup(&mut admitting, message).await?,
            AuthKind::Scram(s) => s.on_startup(&mut admitting, message).await?,
        }
        match admitting.refusal() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The running statement of each connection, by backend pid, for CancelRequest.
#[derive(Default)]
pub struct Cancels {
    by_pid: std::sync::Mutex<HashMap<i32, (SecretKey, CancellationToken)>>,
}

impl Cancels {
    /// A fresh token for the statement a connection starts now.
    fn start(&self, pid: i32, secret: &SecretKey) -> CancellationToken {
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

    fn forget(&self, pid: i32) {
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

/// Startup without a password: only reachable from loopback (the server refuses to listen
/// elsewhere unless trust is explicitly extended).
pub struct Startup;

/// The ParameterStatus values sent after authentication.
pub struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let md = client.metadata();
        let user = md.get(pgwire::api::METADATA_USER).cloned().unwrap_or_else(|| "lakecube".into());
        let app = md.get(pgwire::api::METADATA_APPLICATION_NAME).cloned().unwrap_or_default();
        let mut p = HashMap::new();
        p.insert("server_version".into(), SERVER_VERSION.into());
        p.insert("server_encoding".into(), "UTF8".into());
        p.insert("client_encoding".into(), "UTF8".into());
        p.insert("DateStyle".into(), "ISO, MDY".into());
        p.insert("IntervalStyle".into(), "postgres".into());
        p.insert("TimeZone".into(), "UTC".into());
        p.insert("integer_datetimes".into(), "on".into());
        p.insert("standard_conforming_strings".into(), "on".into());
        p.insert("is_superuser".into(), "off".into());
        p.insert("session_authorization".into(), user);
        p.insert("application_name".into(), app);
        p.insert("in_hot_standby".into(), "off".into());
        Some(p)
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed) as i32;
            client.set_pid_and_secret_key(pid, SecretKey::I32(rand::random()));
            finish_authentication(client, &Parameters).await?;
        }
        Ok(())
    }
}

static NEXT_PID: AtomicU64 = AtomicU64::new(10_000);

/// A connection's session, kept in pgwire's per-connection extensions; forgets the
/// connection's cancel key when the connection ends.
pub struct SessionCell {
    session: tokio::sync::Mutex<Session>,
    pid: i32,
    secret: SecretKey,
    cancels: Arc<Cancels>,
    /// The transaction status the last Execute left, applied after pgwire's own bookkeeping.
    status_after: std::sync::Mutex<Option<TransactionStatus>>,
    /// When the running statement, or the running Execute of a paged portal, began.
    clock: Arc<Clock>,
}

/// When the statement running on a connection began: `statement_timeout` counts from there.
/// PostgreSQL counts each Execute of a paged portal afresh, and so does this: a portal's rows
/// stream under the clock of the Execute that asks for them, not of the first one.
#[derive(Debug)]
pub struct Clock(std::sync::Mutex<tokio::time::Instant>);

impl Clock {
    fn new() -> Arc<Clock> {
        Arc::new(Clock(std::sync::Mutex::new(tokio::time::Instant::now())))
    }

    /// A statement (or an Execute) starts now.
    fn restart(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = tokio::time::Instant::now();
        }
    }

    /// The deadline of a statement with this timeout (none for 0).
    fn deadline(&self, timeout_ms: u64) -> Option<tokio::time::Instant> {
        let started = self.0.lock().map(|t| *t).unwrap_or_else(|_| tokio::time::Instant::now());
        (timeout_ms > 0).then(|| started + std::time::Duration::from_millis(timeout_ms))
    }
}

/// Waits for what is asked, unless the statement is cancelled or its time runs out first.
async fn bounded<T>(
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

impl Drop for SessionCell {
    fn drop(&mut self) {
        self.cancels.forget(self.pid);
    }
}

/// The connection's session, made at its first statement (after authentication, whichever
/// startup handler ran).
fn session_of<C: ClientInfo>(client: &C, cancels: &Arc<Cancels>, defaults: &SessionDefaults) -> PgWireResult<Arc<SessionCell>> {
    let md = client.metadata();
    let user = md.get(pgwire::api::METADATA_USER).cloned().unwrap_or_else(|| "lakecube".into());
    let (pid, secret) = client.pid_and_secret_key();
    Ok(client.session_extensions().get_or_insert_with(|| SessionCell {
        session: tokio::sync::Mutex::new(Session::new(user, md, defaults.clone())),
        pid,
        secret,
        cancels: cancels.clone(),
        status_after: std::sync::Mutex::new(None),
        clock: Clock::new(),
    }))
}

/// The session timeout that applies to a connection waiting for its next message: in a
/// transaction block `idle_in_transaction_session_timeout` (25P03), else
/// `idle_session_timeout` (57P05); `None` when it is off (0). A connection with no session yet
/// has the server's defaults, which a session is made with.
pub fn session_timeouts<C: ClientInfo>(client: &C, in_transaction: bool) -> Option<(std::time::Duration, Error)> {
    let name = if in_transaction { "idle_in_transaction_session_timeout" } else { "idle_session_timeout" };
    let ms = client
        .session_extensions()
        .get::<SessionCell>()
        .and_then(|cell| cell.session.try_lock().ok().map(|s| s.settings.duration_ms(name)))
        .unwrap_or(0);
    if ms == 0 {
        return None;
    }
    let error = if in_transaction {
        Error::new(ErrorKind::IdleInTransactionTimeout, "terminating connection due to idle-in-transaction timeout")
    } else {
        Error::new(ErrorKind::IdleSessionTimeout, "terminating connection due to idle-session timeout")
    };
    Some((std::time::Duration::from_millis(ms), error.with_hint(format!("the server closes connections idle for longer than {name} ({ms} ms)"))))
}

/// A statement prepared by Parse.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub sql: String,
    pub kind: PreparedKind,
}

#[derive(Clone, Debug)]
pub enum PreparedKind {
    /// A query and its plan with `$n` placeholders.
    Query { planned: Planned, params: Params },
    /// A session statement, run at Execute; `columns` is what it returns, if rows; `params`
    /// are those of a DECLARE's query.
    Command { command: Command, columns: Option<SchemaRef>, params: Params },
}

/// The types of a statement's parameters: the client's where given, else inferred.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub types: Vec<Type>,
    /// The type DataFusion inferred for each placeholder, where it inferred one.
    pub data_types: Vec<Option<DataType>>,
}

impl Params {
    fn of(plan: &datafusion::logical_expr::LogicalPlan, declared: &[Option<Type>]) -> Result<Params, Error> {
        let inferred = plan.get_parameter_types().map_err(Error::from)?;
        let count = inferred.len().max(declared.len());
        let data_types: Vec<Option<DataType>> =
            (0..count).map(|i| inferred.get(&format!("${}", i + 1)).cloned().flatten()).collect();
        let types = (0..count)
            .map(|i| {
                declared.get(i).cloned().flatten().unwrap_or_else(|| {
                    data_types[i].as_ref().map(|dt| canonical(dt).1).unwrap_or(Type::TEXT)
                })
            })
            .collect();
        Ok(Params { types, data_types })
    }
}

pub struct Parser {
    engine: Engine,
    cancels: Arc<Cancels>,
    metrics: Arc<Metrics>,
    defaults: SessionDefaults,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let cell = session_of(client, &self.cancels, &self.defaults)?;
        let fail = |e: Error| {
            log_failure(&self.metrics, &who(client), sql, &e);
            to_pg_error(e)
        };
        let info = cell.session.lock().await.info();
        // Parse plans the statement: statement_timeout and cancel cover it.
        let token = self.cancels.start(cell.pid, &cell.secret);
        cell.clock.restart();
        let timeout = info.settings.statement_timeout_ms();
        if let Some(command) = parse_command(sql).map_err(to_pg_error)? {
            // A DECLARE's query is planned now for its parameters (psycopg's server-side
            // cursors send `DECLARE … FOR SELECT … $1` with values).
            let params = match &command {
                Command::Declare { query, .. } => match plan_in_task(&self.engine, query, info.clone(), &token, &cell.clock, timeout).await.map_err(fail)? {
                    Some(p) => Params::of(&p.plan, types).map_err(fail)?,
                    None => Params::default(),
                },
                _ => Params::default(),
            };
            let session = cell.session.lock().await;
            let columns = command_columns(&command, &session);
            return Ok(Some(Prepared { sql: sql.to_string(), kind: PreparedKind::Command { command, columns, params } }));
        }
        let Some(planned) = plan_in_task(&self.engine, sql, info, &token, &cell.clock, timeout).await.map_err(fail)? else {
            return Ok(None);
        };
        let params = Params::of(&planned.plan, types).map_err(fail)?;
        Ok(Some(Prepared { sql: sql.to_string(), kind: PreparedKind::Query { planned, params } }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(match &stmt.kind {
            PreparedKind::Query { params, .. } | PreparedKind::Command { params, .. } => params.types.clone(),
        })
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        if let Some(columns) = result_columns(stmt) {
            super::encode::check_result_formats(format, columns).map_err(to_pg_error)?;
        }
        Ok(match &stmt.kind {
            PreparedKind::Query { planned, .. } => field_infos(&planned.schema(), format),
            PreparedKind::Command { columns: Some(schema), .. } => field_infos(schema, format),
            PreparedKind::Command { columns: None, .. } => Vec::new(),
        })
    }
}

/// How many columns a prepared statement returns, where known before it runs.
fn result_columns(stmt: &Prepared) -> Option<usize> {
    match &stmt.kind {
        PreparedKind::Query { planned, .. } => Some(planned.schema().fields().len()),
        PreparedKind::Command { columns, .. } => columns.as_ref().map(|c| c.fields().len()),
    }
}

/// The columns a session statement returns (SHOW, FETCH), known before it runs.
fn command_columns(command: &Command, session: &Session) -> Option<SchemaRef> {
    use datafusion::arrow::datatypes::{Field, Schema};
    match command {
        Command::Show(name) => {
            let col = crate::engine::settings::canonical_name(name).map(str::to_string).unwrap_or_else(|| name.clone());
            Some(Arc::new(Schema::new(vec![Field::new(col, DataType::Utf8, true)])))
        }
        Command::ShowAll => Some(Arc::new(Schema::new(
            ["name", "setting", "description"].map(|n| Field::new(n, DataType::Utf8, true)).to_vec(),
        ))),
        Command::Fetch { name, is_move: false, .. } => session.cursors.get(name).map(|c| c.schema.clone()),
        _ => None,
    }
}

/// What a statement produced.
enum Outcome {
    /// An empty statement.
    Empty,
    /// A command tag, with the settings to report in ParameterStatus.
    Done { tag: Tag, report: Vec<(String, String)> },
    /// Rows.
    Rows(QueryResponse),
}

/// Settings PostgreSQL reports to the client in ParameterStatus when they change.
const REPORTED: &[&str] = &[
    "application_name", "client_encoding", "DateStyle", "IntervalStyle", "is_superuser", "server_encoding",
    "server_version", "session_authorization", "standard_conforming_strings", "TimeZone", "integer_datetimes",
];

pub struct Backend {
    engine: Engine,
    parser: Arc<Parser>,
    cancels: Arc<Cancels>,
    metrics: Arc<Metrics>,
    defaults: SessionDefaults,
}

impl Backend {
    /// Plans a statement in a task of its own, so that its statement_timeout and a cancel
    /// request stop waiting for it even while planning keeps a worker busy.
    async fn plan(
        &self,
        sql: &str,
        info: crate::engine::sql::SessionInfo,
        token: &CancellationToken,
        cell: &SessionCell,
        timeout_ms: u64,
    ) -> Result<Option<Planned>, Error> {
        plan_in_task(&self.engine, sql, info, token, &cell.clock, timeout_ms).await
    }

    /// Runs one statement of a session. `status` is the transaction status before it and
    /// becomes the status after it.
    async fn statement(
        &self,
        cell: &SessionCell,
        sql: &str,
        prepared: Option<&Prepared>,
        params: Option<ParamValues>,
        status: &mut TransactionStatus,
        format: &Format,
        who: &str,
    ) -> Result<Outcome, Error> {
        let command = match prepared {
            Some(Prepared { kind: PreparedKind::Command { command, .. }, .. }) => Some(command.clone()),
            Some(_) => None,
            None => parse_command(sql)?,
        };
        if *status == TransactionStatus::Error
            && !matches!(command, Some(Command::Commit | Command::Rollback | Command::RollbackTo))
        {
            return Err(Error::new(
                ErrorKind::InFailedTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            )
            .with_hint("send ROLLBACK (or ROLLBACK TO a savepoint) to go on"));
        }
        let token = self.cancels.start(cell.pid, &cell.secret);
        cell.clock.restart();
        let Some(command) = command else {
            let mut session = cell.session.lock().await;
            let timeout = session.settings.statement_timeout_ms();
            let planned = match prepared {
                Some(Prepared { kind: PreparedKind::Query { planned, .. }, .. }) => {
                    let mut p = planned.clone();
                    if let Some(values) = params {
                        p.plan = p.plan.with_param_values(values).map_err(Error::from)?;
                    }
                    p
                }
                _ => match self.plan(sql, session.info(), &token, cell, timeout).await? {
                    Some(p) => p,
                    None => return Ok(Outcome::Empty),
                },
            };
            for (name, value) in &planned.setting_changes {
                session.settings.set(name, value).map_err(crate::engine::set_error)?;
            }
            // set_config('statement_timeout', …) applies from the next statement on.
            drop(session);
            return Ok(Outcome::Rows(self.run(planned, format, sql, who.to_string(), token, cell.clock.clone(), timeout).await?));
        };
        let mut session = cell.session.lock().await;
        let timeout = session.settings.statement_timeout_ms();
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
                .map_err(crate::engine::set_error)?;
                let report = reported(&session, &name);
                Ok(Outcome::Done { tag: Tag::new("SET"), report })
            }
            Command::SetAccepted { tag: t } => tag(t),
            Command::Reset(name) => {
                session.settings.reset(&name).map_err(crate::engine::set_error)?;
                let report = reported(&session, &name);
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
                    crate::engine::set_error(crate::engine::settings::SetError::Unknown(name.clone()))
                })?;
                let schema = command_columns(&Command::Show(name), &session).expect("SHOW has columns");
                rows_response(&schema, vec![vec![Some(value)]], format, "SHOW")
            }
            Command::ShowAll => {
                let schema = command_columns(&Command::ShowAll, &session).expect("SHOW ALL has columns");
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
                if session.cursors.len() >= super::session::MAX_CURSORS {
                    return Err(Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        format!("too many open cursors: a session may have {} at once", super::session::MAX_CURSORS),
                    )
                    .with_hint("CLOSE the cursors you are done with (or CLOSE ALL)"));
                }
                if parse_command(&query)?.is_some() {
                    return Err(Error::new(ErrorKind::Syntax, "a cursor is declared FOR a query"));
                }
                let mut planned = self
                    .plan(&query, session.info(), &token, cell, timeout)
                    .await?
                    .ok_or_else(|| Error::new(ErrorKind::Syntax, "a cursor is declared FOR a query"))?;
                if let Some(values) = params {
                    planned.plan = planned.plan.with_param_values(values).map_err(Error::from)?;
                }
                let (schema, stream) = bounded(self.engine.execute_planned(planned), &token, &cell.clock, timeout).await?;
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
                    let rows = bounded(counted, &token, &cell.clock, timeout).await?;
                    return tag(&format!("MOVE {rows}"));
                }
                // Rows stream to the client as the cursor reads them, under the statement's
                // timeout and cancel, one batch in memory at a time.
                let format = if cursor.binary { Format::UnifiedBinary } else { format.clone() };
                let fields = Arc::new(field_infos(&cursor.schema, &format));
                let rows = data_rows(batches, fields.clone(), token, cell.clock.clone(), timeout, None);
                let mut resp = QueryResponse::new(fields, rows);
                resp.set_command_tag("FETCH");
                Ok(Outcome::Rows(resp))
            }
        }
    }

    /// Runs a plan and wraps its batches as a stream of DataRows (one batch in memory at a
    /// time), stopped by a cancel request or the statement timeout.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        planned: Planned,
        format: &Format,
        sql: &str,
        client: String,
        token: CancellationToken,
        clock: Arc<Clock>,
        timeout_ms: u64,
    ) -> Result<QueryResponse, Error> {
        let log = Arc::new(QueryLog { sql: sql.to_string(), client, start: Instant::now(), rows: AtomicU64::new(0) });
        let (schema, stream) = bounded(self.engine.execute_planned(planned), &token, &clock, timeout_ms).await?;
        let fields = Arc::new(field_infos(&schema, format));
        let batches = stream.map(|b| b.map_err(Error::from));
        Ok(QueryResponse::new(fields.clone(), data_rows(batches, fields, token, clock, timeout_ms, Some(log))))
    }
}

/// Batches as DataRows, encoded one batch at a time as the client reads them; a cancel
/// request or the statement's timeout (counted from its clock, so each Execute of a paged
/// portal afresh) ends the stream with an error.
fn data_rows(
    batches: impl futures::Stream<Item = Result<datafusion::arrow::record_batch::RecordBatch, Error>> + Send + 'static,
    fields: Arc<Vec<FieldInfo>>,
    token: CancellationToken,
    clock: Arc<Clock>,
    timeout_ms: u64,
    log: Option<Arc<QueryLog>>,
) -> impl futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + 'static {
    let guarded = futures::stream::unfold((Box::pin(batches), false), move |(mut stream, done)| {
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
    });
    guarded.flat_map(move |batch| {
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
        futures::stream::iter(out)
    })
}

/// [`Backend::plan`]'s task: planning aborted (at its next await) when it loses the race.
async fn plan_in_task(
    engine: &Engine,
    sql: &str,
    info: crate::engine::sql::SessionInfo,
    token: &CancellationToken,
    clock: &Clock,
    timeout_ms: u64,
) -> Result<Option<Planned>, Error> {
    let (engine, sql) = (engine.clone(), sql.to_string());
    let task = tokio::spawn(async move { engine.plan_sql(&sql, &info).await });
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
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures::future::pending().await,
    }
}

fn canceled() -> Error {
    Error::new(ErrorKind::QueryCanceled, "canceling statement due to user request")
}

fn timed_out() -> Error {
    Error::new(ErrorKind::QueryCanceled, "canceling statement due to statement timeout")
        .with_hint("raise statement_timeout (SET statement_timeout = '5min') or narrow the query")
}

fn no_cursor(name: &str) -> Error {
    Error::new(ErrorKind::InvalidCursorName, format!("cursor \"{name}\" does not exist"))
}

/// The ParameterStatus a SET/RESET of `name` reports, if PostgreSQL reports that setting.
fn reported(session: &Session, name: &str) -> Vec<(String, String)> {
    match crate::engine::settings::canonical_name(name) {
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

/// Logs one line per query when its result stream is dropped (finished, failed or abandoned).
struct QueryLog {
    sql: String,
    client: String,
    start: Instant,
    rows: AtomicU64,
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        tracing::info!(
            client = %self.client,
            rows = self.rows.load(Ordering::Relaxed),
            ms = format!("{:.1}", self.start.elapsed().as_secs_f64() * 1000.0),
            sql = %one_line_short(&self.sql),
            "query"
        );
    }
}

/// A statement on one line for the query log, cut at 300 bytes. (A failed statement is
/// logged whole: it is what a maintainer needs to reproduce it.)
fn one_line_short(sql: &str) -> String {
    let s = one_line(sql);
    if s.len() > 300 { format!("{}…", &s[..s.floor_char_boundary(300)]) } else { s }
}

/// Who sent a statement, for the query log: `user@address:port`.
fn who<C: ClientInfo>(client: &C) -> String {
    let user = client.metadata().get(pgwire::api::METADATA_USER).map(String::as_str).unwrap_or("lakecube");
    format!("{user}@{}", client.socket_addr())
}

fn log_failure(metrics: &Metrics, who: &str, sql: &str, e: &Error) {
    tracing::info!(client = %who, sqlstate = e.sqlstate(), error = %e.message, sql = %one_line(sql), "query failed");
    metrics.record_failure(crate::telemetry::Failure { sqlstate: e.sqlstate().into(), message: e.message.clone(), sql: one_line(sql) });
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    /// The whole simple-query cycle, so that each statement of a message gets its own
    /// response, an error ends the message, and the transaction status is lakecube's own.
    async fn on_query<C>(&self, client: &mut C, query: pgwire::messages::simplequery::Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cell = session_of(client, &self.cancels, &self.defaults)?;
        let who = who(client);
        let mut status = client.transaction_status();
        let statements = split_statements(&query.query);
        let mut failure = None;
        match statements {
            Err(e) => failure = Some((e, query.query.clone())),
            Ok(s) if s.is_empty() => {
                client.feed(PgWireBackendMessage::EmptyQueryResponse(pgwire::messages::response::EmptyQueryResponse::new())).await?;
            }
            Ok(statements) => {
                for sql in statements {
                    match self.statement(&cell, &sql, None, None, &mut status, &Format::UnifiedText, &who).await {
                        Ok(outcome) => {
                            if let Err(e) = send_outcome(client, outcome, true).await {
                                match e {
                                    PgWireError::UserError(info) => {
                                        client.feed(PgWireBackendMessage::ErrorResponse((*info).into())).await?;
                                        status = status.to_error_state();
                                        break;
                                    }
                                    other => return Err(other),
                                }
                            }
                        }
                        Err(e) => {
                            failure = Some((e, sql));
                            break;
                        }
                    }
                }
            }
        }
        if let Some((e, sql)) = failure {
            log_failure(&self.metrics, &who, &sql, &e);
            client.feed(PgWireBackendMessage::ErrorResponse(error_info(e).into())).await?;
            status = status.to_error_state();
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        pgwire::api::query::send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        unreachable!("on_query answers simple queries itself")
    }
}

/// Sends a statement's outcome in the simple-query protocol.
async fn send_outcome<C>(client: &mut C, outcome: Outcome, describe: bool) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match outcome {
        Outcome::Empty => {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(pgwire::messages::response::EmptyQueryResponse::new())).await?;
        }
        Outcome::Done { tag, report } => {
            send_report(client, report).await?;
            pgwire::api::query::send_execution_response(client, tag).await?;
        }
        Outcome::Rows(mut resp) => {
            if describe {
                let fields: Vec<_> = resp.row_schema().iter().map(Into::into).collect();
                client
                    .feed(PgWireBackendMessage::RowDescription(pgwire::messages::data::RowDescription::new(fields)))
                    .await?;
            }
            let tag = resp.command_tag().to_string();
            let mut rows = 0;
            while let Some(row) = resp.data_rows().next().await {
                client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                rows += 1;
            }
            pgwire::api::query::send_execution_response(client, command_tag(&tag, rows)).await?;
        }
    }
    Ok(())
}

/// The CommandComplete tag of a statement that returned `rows` rows: `SELECT 3`, `FETCH 3`,
/// but plain `SHOW`, as PostgreSQL sends them.
fn command_tag(tag: &str, rows: usize) -> Tag {
    if tag == "SHOW" { Tag::new(tag) } else { Tag::new(tag).with_rows(rows) }
}

async fn send_report<C>(client: &mut C, report: Vec<(String, String)>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (k, v) in report {
        client
            .feed(PgWireBackendMessage::ParameterStatus(pgwire::messages::startup::ParameterStatus::new(k, v)))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Describe, where a portal may also be a cursor declared in SQL: PostgreSQL keeps both in
    /// one namespace, and psycopg describes its server-side cursors as portals.
    async fn on_describe<C>(&self, client: &mut C, message: pgwire::messages::extendedquery::Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::store::PortalStore;
        if message.target_type == b'P'
            && let Some(name) = message.name.as_deref()
            && client.portal_store().get_portal(name).is_none()
        {
            let cell = session_of(client, &self.cancels, &self.defaults)?;
            let fields = {
                let session = cell.session.lock().await;
                session.cursors.get(name).map(|c| {
                    let format = if c.binary { Format::UnifiedBinary } else { Format::UnifiedText };
                    field_infos(&c.schema, &format)
                })
            };
            if let Some(fields) = fields {
                let response = pgwire::api::results::DescribePortalResponse::new(fields);
                return pgwire::api::query::send_describe_response(client, &response).await;
            }
        }
        self._on_describe(client, message).await
    }

    /// Execute, streaming rows straight to the client. (pgwire 0.42's own Execute collects
    /// every row of the portal — or of the page, with a row limit — in memory before sending
    /// the first, which a full-table read through pgjdbc or psycopg cannot afford.) With a
    /// row limit the rest of the stream stays in the portal and the next Execute resumes it.
    async fn on_execute<C>(&self, client: &mut C, message: pgwire::messages::extendedquery::Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::portal::PortalExecutionState;
        use pgwire::api::store::{Entry, PortalStore};
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let cell = session_of(client, &self.cancels, &self.defaults)?;
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME).to_string();
        let portal = match client.portal_store().get_portal(&name) {
            Some(Entry::Value(p)) => p,
            Some(Entry::Empty) => {
                client.feed(PgWireBackendMessage::EmptyQueryResponse(pgwire::messages::response::EmptyQueryResponse::new())).await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name)),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let max_rows = message.max_rows.max(0) as usize;
        let state = portal.state();
        let mut st = state.lock().await;
        if matches!(*st, PortalExecutionState::Initial) {
            let result = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), max_rows).await;
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let response = result?;
            if let Some(status) = cell.status_after.lock().ok().and_then(|mut s| s.take()) {
                client.set_transaction_status(status);
            }
            match response {
                Response::Query(r) => *st = PortalExecutionState::Suspended(r),
                Response::Execution(tag) => {
                    *st = PortalExecutionState::Finished;
                    return pgwire::api::query::send_execution_response(client, tag).await;
                }
                _ => {
                    *st = PortalExecutionState::Finished;
                    return client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(pgwire::messages::response::EmptyQueryResponse::new()))
                        .await
                        .map_err(Into::into);
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        let PortalExecutionState::Suspended(response) = &mut *st else {
            // Executing a finished portal again returns no more rows, as in PostgreSQL.
            return pgwire::api::query::send_execution_response(client, Tag::new("SELECT").with_rows(0)).await;
        };
        // statement_timeout counts each Execute afresh, as PostgreSQL does.
        cell.clock.restart();
        let command = response.command_tag().to_string();
        let mut sent = 0usize;
        loop {
            if max_rows > 0 && sent == max_rows {
                return client.feed(PgWireBackendMessage::PortalSuspended(pgwire::messages::extendedquery::PortalSuspended::new())).await.map_err(Into::into);
            }
            match response.data_rows().next().await {
                Some(Ok(row)) => {
                    client.feed(PgWireBackendMessage::DataRow(row)).await?;
                    sent += 1;
                }
                Some(Err(e)) => {
                    *st = PortalExecutionState::Finished;
                    return Err(e);
                }
                None => {
                    *st = PortalExecutionState::Finished;
                    return pgwire::api::query::send_execution_response(client, command_tag(&command, sent)).await;
                }
            }
        }
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let cell = session_of(client, &self.cancels, &self.defaults)?;
        let prepared = &portal.statement.statement;
        if let Some(columns) = result_columns(prepared) {
            super::encode::check_result_formats(&portal.result_column_format, columns).map_err(to_pg_error)?;
        }
        let values = bind_parameters(portal, prepared).map_err(to_pg_error)?;
        let params = (!values.is_empty()).then(|| ParamValues::List(values.into_iter().map(Into::into).collect()));
        let who = who(client);
        let mut status = client.transaction_status();
        let outcome = self
            .statement(&cell, &prepared.sql, Some(prepared), params, &mut status, &portal.result_column_format, &who)
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                log_failure(&self.metrics, &who, &prepared.sql, &e);
                return Err(to_pg_error(e));
            }
        };
        if let Ok(mut s) = cell.status_after.lock() {
            *s = Some(status);
        }
        if let PreparedKind::Command { command: Command::Deallocate(Some(name)), .. } = &prepared.kind {
            pgwire::api::store::PortalStore::rm_statement(client.portal_store(), name);
        }
        Ok(match outcome {
            Outcome::Empty => Response::EmptyQuery,
            Outcome::Done { tag, report } => {
                send_report(client, report).await?;
                Response::Execution(tag)
            }
            Outcome::Rows(resp) => Response::Query(resp),
        })
    }
}

/// Decodes Bind parameters (text or binary) into DataFusion values of the planned types.
fn bind_parameters(portal: &Portal<Prepared>, prepared: &Prepared) -> Result<Vec<ScalarValue>, Error> {
    let (PreparedKind::Query { params, .. } | PreparedKind::Command { params, .. }) = &prepared.kind;
    let (types, param_data_types) = (&params.types, &params.data_types);
    let bad = |i: usize, e: PgWireError| {
        Error::new(ErrorKind::DataException, format!("parameter ${}: {e}", i + 1))
    };
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let t = types.get(i).cloned().unwrap_or(Type::TEXT);
        // A text parameter is read as text and cast to the type the statement needs below, so
        // that every PostgreSQL text form Arrow's casts accept works ('2024-02-01' for a
        // timestamp, 't' for a boolean), whatever type the client declared.
        let t = if portal.parameter_format.is_binary(i) { t } else { Type::TEXT };
        let v = match t {
            Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, &t).map_err(|e| bad(i, e))?),
            Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, &t).map_err(|e| bad(i, e))?),
            Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, &t).map_err(|e| bad(i, e))?),
            Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, &t).map_err(|e| bad(i, e))?),
            Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, &t).map_err(|e| bad(i, e))?),
            Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, &t).map_err(|e| bad(i, e))?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                ScalarValue::Utf8(portal.parameter::<String>(i, &t).map_err(|e| bad(i, e))?)
            }
            Type::NUMERIC => match portal.parameter::<Decimal>(i, &t).map_err(|e| bad(i, e))? {
                Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
                None => ScalarValue::Decimal128(None, 38, 0),
            },
            Type::DATE => ScalarValue::Date32(
                portal
                    .parameter::<NaiveDate>(i, &t)
                    .map_err(|e| bad(i, e))?
                    .map(|d| (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32),
            ),
            Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
                portal.parameter::<NaiveDateTime>(i, &t).map_err(|e| bad(i, e))?.map(|d| d.and_utc().timestamp_micros()),
                None,
            ),
            Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
                portal.parameter::<DateTime<chrono::FixedOffset>>(i, &t).map_err(|e| bad(i, e))?.map(|d| d.timestamp_micros()),
                Some("UTC".into()),
            ),
            other => {
                return Err(Error::new(
                    ErrorKind::FeatureNotSupported,
                    format!("parameter ${} has type {}, which lakecube does not accept yet", i + 1, other.name()),
                )
                .with_hint("send the parameter as text, or cast it in SQL"));
            }
        };
        // Give DataFusion the type it inferred for the placeholder, where it inferred one.
        let v = match param_data_types.get(i).cloned().flatten() {
            Some(dt) if dt != v.data_type() && dt != DataType::Null => v.cast_to(&dt).map_err(|e| {
                Error::new(ErrorKind::DataException, format!("parameter ${}: {}", i + 1, e.find_root()))
            })?,
            _ => v,
        };
        out.push(v);
    }
    Ok(out)
}
