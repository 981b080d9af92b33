//! pgwire handlers: startup, simple query and extended query, cancel requests, over an
//! [`Engine`]. Session statements (SET, BEGIN, DECLARE, FETCH, …) are parsed and applied by
//! [`super::command`]; everything else is planned by the engine and streamed under the
//! bounds of [`super::cancel`].

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
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rust_decimal::Decimal;

use super::encode::{canonical, error_info, field_infos};
use super::cancel::{Cancels, Clock, QueryLog, bounded, data_rows, plan_in_task};
use super::command::{Command, Outcome, command_columns, parse_command};
use super::encode::to_pg_error;
use super::session::Session;
use crate::pg::parse::{one_line, split_statements};
use crate::engine::{Engine, Planned};
use crate::telemetry::RecentFailures;
use crate::error::{Error, ErrorKind};

use crate::pg::settings::REPORTED;


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
            backend: Arc::new(Backend { engine, parser, cancels: cancels.clone(), failures, defaults }),
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
        let mut p: HashMap<String, String> = REPORTED
            .iter()
            .map(|n| (n.to_string(), crate::pg::settings::default_of(n).unwrap_or_default().to_string()))
            .collect();
        p.insert("session_authorization".into(), user);
        p.insert("application_name".into(), app);
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
    /// and `declared` are a DECLARE's query's parameters and plan.
    Command { command: Command, columns: Option<SchemaRef>, params: Params, declared: Option<Planned> },
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
    failures: Arc<RecentFailures>,
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
            log_failure(&self.failures, &who(client), sql, &e);
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
            let (params, declared) = match &command {
                Command::Declare { query, .. } => {
                    match plan_in_task(&self.engine, query, info.clone(), &token, &cell.clock, timeout).await.map_err(fail)? {
                        Some(p) => (Params::of(&p.plan, types).map_err(fail)?, Some(p)),
                        None => (Params::default(), None),
                    }
                }
                _ => (Params::default(), None),
            };
            let session = cell.session.lock().await;
            let columns = command_columns(&command, &session);
            return Ok(Some(Prepared { sql: sql.to_string(), kind: PreparedKind::Command { command, columns, params, declared } }));
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

pub struct Backend {
    engine: Engine,
    parser: Arc<Parser>,
    cancels: Arc<Cancels>,
    failures: Arc<RecentFailures>,
    defaults: SessionDefaults,
}

impl Backend {
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
                Some(Prepared { kind: PreparedKind::Query { planned, .. }, .. }) => planned.clone().bind(params)?,
                _ => match plan_in_task(&self.engine, sql, session.info(), &token, &cell.clock, timeout).await? {
                    Some(p) => p,
                    None => return Ok(Outcome::Empty),
                },
            };
            for (name, value) in &planned.setting_changes {
                session.settings.set(name, value).map_err(Error::from)?;
            }
            // set_config('statement_timeout', …) applies from the next statement on.
            drop(session);
            return Ok(Outcome::Rows(self.run(planned, format, sql, who.to_string(), token, cell.clock.clone(), timeout).await?));
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

/// Who sent a statement, for the query log: `user@address:port`.
fn who<C: ClientInfo>(client: &C) -> String {
    let user = client.metadata().get(pgwire::api::METADATA_USER).map(String::as_str).unwrap_or("lakecube");
    format!("{user}@{}", client.socket_addr())
}

fn log_failure(failures: &RecentFailures, who: &str, sql: &str, e: &Error) {
    tracing::info!(client = %who, sqlstate = e.sqlstate(), error = %e.message, sql = %one_line(sql), "query failed");
    failures.record_failure(crate::telemetry::Failure { sqlstate: e.sqlstate().into(), message: e.message.clone(), sql: one_line(sql) });
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
                log_failure(&self.failures, &who, &prepared.sql, &e);
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
