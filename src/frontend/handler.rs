//! The query path and the simple-query protocol, over an [`Engine`]: [`Handlers`] (all
//! pgwire handlers of one server), a connection's [`SessionCell`] and its idle timeouts, the
//! statements Parse prepares ([`Prepared`]), and [`Backend`], whose [`Backend::statement`]
//! runs one statement of either protocol: a session statement (SET, BEGIN, DECLARE, FETCH, …)
//! is parsed and applied by [`super::command`], anything else planned by the engine and
//! streamed under the bounds of [`super::cancel`].
//!
//! The extended protocol (Parse, Bind, Describe, Execute) is [`super::extended`]: it
//! implements pgwire's traits for [`Parser`] and [`Backend`] and imports this file, which
//! never imports it. Authentication is [`super::startup`]'s [`Authenticator`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::encode::{error_info, field_infos};
use super::cancel::{Audited, Cancels, Clock, QueryLog, bounded, data_rows, guarded, plan_in_task};
use super::command::{Command, Outcome, parse_command};
use super::copy::CopyOut;
use crate::pg::copy::CopyTo;
use super::session::Session;
use super::startup::Authenticator;
use crate::pg::parse::{one_line, split_statements};
use crate::engine::{Engine, Planned};
use crate::telemetry::RecentFailures;
use crate::error::{Error, ErrorKind};

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
        failures: Arc<RecentFailures>,
        slots: Arc<tokio::sync::Semaphore>,
        defaults: SessionDefaults,
        tls_cert_pem: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let cancels = Arc::new(Cancels::default());
        let parser = Arc::new(Parser { engine: engine.clone(), cancels: cancels.clone(), failures: failures.clone(), defaults: defaults.clone() });
        let startup = Arc::new(Authenticator::new(users, slots, tls_cert_pem, engine.audit().clone())?);
        Ok(Handlers {
            backend: Arc::new(Backend { engine, parser, cancels: cancels.clone(), failures, defaults }),
            startup,
            cancels,
        })
    }

    /// Makes the session of a connection that just authenticated (with the server's defaults,
    /// so that its idle timeouts apply before its first statement).
    pub fn open_session<C: ClientInfo>(&self, client: &C) {
        let _ = session_of(client, &self.backend.engine, &self.cancels, &self.backend.defaults);
    }

    /// The handlers with their concrete types, for the connection loop.
    pub fn parts(&self) -> (Arc<Authenticator>, Arc<Backend>, Arc<Cancels>) {
        (self.startup.clone(), self.backend.clone(), self.cancels.clone())
    }

    /// Whether clients authenticate with SASL (SCRAM), so that 'p' messages are SASL's.
    pub fn uses_sasl(&self) -> bool {
        self.startup.uses_sasl()
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

/// A connection's session, kept in pgwire's per-connection extensions; forgets the
/// connection's cancel key when the connection ends.
pub struct SessionCell {
    pub(super) session: tokio::sync::Mutex<Session>,
    pub(super) pid: i32,
    pub(super) secret: SecretKey,
    cancels: Arc<Cancels>,
    /// The transaction status the last Execute left, applied after pgwire's own bookkeeping.
    pub(super) status_after: std::sync::Mutex<Option<TransactionStatus>>,
    /// When the running statement, or the running Execute of a paged portal, began.
    pub(super) clock: Arc<Clock>,
}

impl Drop for SessionCell {
    fn drop(&mut self) {
        self.cancels.forget(self.pid);
    }
}

/// The connection's session, made at its first statement (after authentication, whichever
/// startup handler ran).
pub(super) fn session_of<C: ClientInfo>(client: &C, engine: &Engine, cancels: &Arc<Cancels>, defaults: &SessionDefaults) -> PgWireResult<Arc<SessionCell>> {
    let md = client.metadata();
    let user = md.get(pgwire::api::METADATA_USER).cloned().unwrap_or_else(|| "lakecube".into());
    let (pid, secret) = client.pid_and_secret_key();
    Ok(client.session_extensions().get_or_insert_with(|| SessionCell {
        session: tokio::sync::Mutex::new({
            let identity = engine.identity(&user);
            Session::new(user, md, defaults.clone(), Some(identity))
        }),
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
    /// The role the session had taken when it was planned (`SET ROLE`).
    pub role: Option<String>,
    pub kind: PreparedKind,
}

/// What Parse made of a statement: a plan, or a session statement.
#[derive(Clone, Debug)]
pub enum PreparedKind {
    /// A query and its plan with `$n` placeholders.
    Query { planned: Planned, params: Params, copy: Option<CopyTo> },
    /// A session statement, run at Execute; `columns` is what it returns, if rows; `params`
    /// and `declared` are a DECLARE's query's parameters and plan.
    Command { command: Command, columns: Option<SchemaRef>, params: Params, declared: Option<Planned> },
}

/// The types of a statement's parameters: the client's where given, else inferred
/// (`Params::of`, in [`super::extended`]).
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub types: Vec<Type>,
    /// The type DataFusion inferred for each placeholder, where it inferred one.
    pub data_types: Vec<Option<DataType>>,
}

/// Parse's planner, pgwire's `QueryParser` (implemented in [`super::extended`]): it plans a
/// statement at Parse, as [`Backend`] runs it at Execute, over the same engine and sessions.
pub struct Parser {
    pub(super) engine: Engine,
    pub(super) cancels: Arc<Cancels>,
    pub(super) failures: Arc<RecentFailures>,
    pub(super) defaults: SessionDefaults,
}

/// The query handler of both protocols: simple query here, extended query (Parse, Bind,
/// Describe, Execute) in [`super::extended`]; [`Backend::statement`] is the path of each
/// statement in either.
pub struct Backend {
    pub(super) engine: Engine,
    pub(super) parser: Arc<Parser>,
    pub(super) cancels: Arc<Cancels>,
    pub(super) failures: Arc<RecentFailures>,
    pub(super) defaults: SessionDefaults,
}

/// One statement to run: its text, its prepared form (extended protocol), its parameters,
/// the format of its rows, and who sent it ([`who`]).
pub(super) struct Request<'a> {
    pub sql: &'a str,
    pub prepared: Option<&'a Prepared>,
    pub params: Option<ParamValues>,
    pub format: &'a Format,
    pub who: &'a str,
}

impl Backend {
    /// Runs one statement of a session. `status` is the transaction status before it and
    /// becomes the status after it. Its audit record is written when it ends: for a query,
    /// when its rows have gone out ([`QueryLog`]); otherwise here.
    pub(super) async fn statement(&self, cell: &SessionCell, request: Request<'_>, status: &mut TransactionStatus) -> Result<Outcome, Error> {
        let (sql, who) = (request.sql, request.who);
        let mut audited = {
            let session = cell.session.lock().await;
            Some(Audited::new(self.engine.audit().clone(), &session.user, &session.settings, address(who)))
        };
        let outcome = self.run_statement(cell, request, status, &mut audited).await;
        if let Some(a) = audited {
            let failure = outcome.as_ref().err().map(|e| (e.sqlstate().to_string(), e.message.clone()));
            a.record(sql, 0, 0, failure);
        }
        outcome
    }

    /// [`Backend::statement`]; a query takes `audited` into its [`QueryLog`].
    async fn run_statement(&self, cell: &SessionCell, request: Request<'_>, status: &mut TransactionStatus, audited: &mut Option<Audited>) -> Result<Outcome, Error> {
        let Request { sql, prepared, params, format, who } = request;
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
            let (planned, copy) = match prepared {
                Some(Prepared { kind: PreparedKind::Query { planned, copy, .. }, role, .. }) if *role == session.settings.role() => {
                    (planned.clone().bind(params)?, copy.clone())
                }
                // Planned under another role (a SET ROLE since Parse): planned again, in the
                // catalog of the role the session acts as now.
                Some(Prepared { kind: PreparedKind::Query { planned, copy, .. }, .. }) => {
                    let text = copy.as_ref().map_or(sql, |c| c.query.as_str());
                    let Some(again) = plan_in_task(&self.engine, text, session.info(), &token, &cell.clock, timeout).await? else {
                        return Ok(Outcome::Empty);
                    };
                    // The client was told the columns at Parse (PostgreSQL's own error when a
                    // replanned statement's columns change).
                    let names = |p: &crate::engine::Planned| p.plan.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
                    if names(&again) != names(planned) {
                        return Err(Error::new(ErrorKind::FeatureNotSupported, "cached plan must not change result type")
                            .with_hint("the role taken since the statement was prepared shows other columns: prepare it again"));
                    }
                    (again.bind(params)?, copy.clone())
                }
                _ => {
                    // COPY … TO STDOUT runs its query like a SELECT (pg::copy).
                    let copy = crate::pg::copy::parse_copy(sql).transpose()?;
                    let text = copy.as_ref().map_or(sql, |c| c.query.as_str());
                    match plan_in_task(&self.engine, text, session.info(), &token, &cell.clock, timeout).await? {
                        Some(p) => (p, copy),
                        None => return Ok(Outcome::Empty),
                    }
                }
            };
            for (name, value) in &planned.setting_changes {
                session.settings.set(name, value).map_err(Error::from)?;
            }
            // set_config('statement_timeout', …) applies from the next statement on.
            drop(session);
            let audited = audited.take().map(|mut a| {
                a.rollups = planned.rollups.clone();
                a
            });
            let Some(copy) = copy else {
                return Ok(Outcome::Rows(self.run(planned, format, sql, who.to_string(), audited, token, cell.clock.clone(), timeout).await?));
            };
            let (fields, batches, log) = self.start(planned, &CopyOut::wire_format(&copy), sql, who.to_string(), audited, &token, &cell.clock, timeout).await?;
            let batches = guarded(batches, token, cell.clock.clone(), timeout).boxed();
            return Ok(Outcome::Copy(CopyOut::new(fields, batches, log, copy)?));
        };
        let mut session = cell.session.lock().await;
        let timeout = session.settings.statement_timeout_ms();
        let declared = match prepared {
            Some(Prepared { kind: PreparedKind::Command { declared, .. }, .. }) => declared.clone(),
            _ => None,
        };
        let cx = super::command::Context {
            engine: &self.engine,
            session: &mut session,
            status,
            format,
            declared,
            params,
            token: &token,
            clock: &cell.clock,
            timeout,
        };
        command.apply(cx).await
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
        audited: Option<Audited>,
        token: CancellationToken,
        clock: Arc<Clock>,
        timeout_ms: u64,
    ) -> Result<QueryResponse, Error> {
        let (fields, batches, log) = self.start(planned, format, sql, client, audited, &token, &clock, timeout_ms).await?;
        Ok(QueryResponse::new(fields.clone(), data_rows(batches, fields, token, clock, timeout_ms, Some(log))))
    }

    /// Starts a plan (its start bounded by the cancel token and the statement timeout): the
    /// fields its rows go out as in `format`, its batches, and its query log line.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        planned: Planned,
        format: &Format,
        sql: &str,
        client: String,
        audited: Option<Audited>,
        token: &CancellationToken,
        clock: &Clock,
        timeout_ms: u64,
    ) -> Result<(Arc<Vec<FieldInfo>>, impl futures::Stream<Item = Result<RecordBatch, Error>> + Send + 'static, Arc<QueryLog>), Error> {
        let meter = crate::engine::Meter::default();
        let started = bounded(self.engine.execute_metered(planned, Some(&meter)), token, clock, timeout_ms).await;
        let (schema, stream) = match started {
            Ok(s) => s,
            Err(e) => {
                if let Some(a) = audited {
                    a.record(sql, 0, meter.bytes(), Some((e.sqlstate().to_string(), e.message.clone())));
                }
                return Err(e);
            }
        };
        let log = Arc::new(QueryLog {
            sql: sql.to_string(),
            client,
            start: Instant::now(),
            rows: AtomicU64::new(0),
            audited: audited.map(|a| (a, meter)),
            failure: Default::default(),
        });
        let fields = Arc::new(field_infos(&schema, format));
        Ok((fields, stream.map(|b| b.map_err(Error::from)), log))
    }
}

/// The client's address and port in a [`who`].
pub(super) fn address(who: &str) -> &str {
    who.rsplit_once('@').map_or(who, |(_, a)| a)
}

/// Who sent a statement, for the query log: `user@address:port`.
pub(super) fn who<C: ClientInfo>(client: &C) -> String {
    let user = client.metadata().get(pgwire::api::METADATA_USER).map(String::as_str).unwrap_or("lakecube");
    format!("{user}@{}", client.socket_addr())
}

/// Logs a failed statement and keeps it in the record of recent failures.
pub(super) fn log_failure(failures: &RecentFailures, who: &str, sql: &str, e: &Error) {
    record_failure(failures, who, sql, e.sqlstate(), &e.message);
}

/// Logs an error that ended a statement after its first rows went out (a cancel, the
/// statement timeout, a value that cannot be encoded), as [`log_failure`] logs the others.
pub(super) fn log_sent_failure(failures: &RecentFailures, who: &str, sql: &str, e: &PgWireError) {
    if let PgWireError::UserError(info) = e {
        record_failure(failures, who, sql, &info.code, &info.message);
    }
}

fn record_failure(failures: &RecentFailures, who: &str, sql: &str, sqlstate: &str, message: &str) {
    tracing::info!(client = %who, sqlstate, error = %message, sql = %one_line(sql), "query failed");
    failures.record_failure(crate::telemetry::Failure { sqlstate: sqlstate.into(), message: message.to_string(), sql: one_line(sql) });
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
        let cell = session_of(client, &self.engine, &self.cancels, &self.defaults)?;
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
                    match self.statement(&cell, Request { sql: &sql, prepared: None, params: None, format: &Format::UnifiedText, who: &who }, &mut status).await {
                        Ok(outcome) => {
                            if let Err(e) = send_outcome(client, outcome, true).await {
                                log_sent_failure(&self.failures, &who, &sql, &e);
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
            log_failure(&self.failures, &who, &sql, &e);
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
        Outcome::Copy(copy) => {
            let tag = copy.send(client).await?;
            pgwire::api::query::send_execution_response(client, tag).await?;
        }
    }
    Ok(())
}

/// The CommandComplete tag of a statement that returned `rows` rows: `SELECT 3`, `FETCH 3`,
/// but plain `SHOW`, as PostgreSQL sends them.
pub(super) fn command_tag(tag: &str, rows: usize) -> Tag {
    if tag == "SHOW" { Tag::new(tag) } else { Tag::new(tag).with_rows(rows) }
}

/// Sends the ParameterStatus messages of settings a statement changed that clients track.
pub(super) async fn send_report<C>(client: &mut C, report: Vec<(String, String)>) -> PgWireResult<()>
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
