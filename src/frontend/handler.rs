//! pgwire handlers: startup, simple query and extended query, over an [`Engine`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use futures::{Sink, StreamExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rust_decimal::Decimal;

use super::encode::{canonical, encode_batch, field_infos};
use crate::engine::{Engine, Planned};
use crate::error::{Error, ErrorKind};

/// The version reported to clients: drivers parse it to choose their SQL.
pub const SERVER_VERSION: &str = "15.8";

/// Turns a lakecube error into a PostgreSQL ErrorResponse.
pub fn to_pg_error(e: Error) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.message);
    info.hint = e.hint;
    PgWireError::UserError(Box::new(info))
}

/// All handlers of one server, shared by its connections.
pub struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
}

impl Handlers {
    pub fn new(engine: Engine) -> Self {
        let parser = Arc::new(Parser { engine: engine.clone() });
        Handlers {
            backend: Arc::new(Backend { engine, parser }),
            startup: Arc::new(Startup),
        }
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
}

/// Startup without a password: only reachable from loopback (the server refuses to listen
/// elsewhere unless trust is explicitly extended).
pub struct Startup;

struct Parameters;

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
        p.insert("default_transaction_read_only".into(), "on".into());
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
            client.set_pid_and_secret_key(pid, pgwire::messages::startup::SecretKey::I32(rand::random()));
            finish_authentication(client, &Parameters).await?;
        }
        Ok(())
    }
}

static NEXT_PID: AtomicU64 = AtomicU64::new(10_000);

/// A statement prepared by Parse: its SQL, its plan with `$n` placeholders, and the types of
/// its parameters (the client's where given, else inferred).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub sql: String,
    pub plan: LogicalPlan,
    pub cube_queries: Vec<crate::semantic::query::CubeQuery>,
    pub param_types: Vec<Type>,
    /// The type DataFusion inferred for each placeholder, where it inferred one.
    pub param_data_types: Vec<Option<DataType>>,
}

pub struct Parser {
    engine: Engine,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let planned = self.engine.plan_with_cubes(sql).await.map_err(to_pg_error)?;
        let (plan, cube_queries) = (planned.plan, planned.cube_queries);
        let inferred = plan.get_parameter_types().map_err(|e| to_pg_error(e.into()))?;
        let count = inferred.len().max(types.len());
        let param_data_types: Vec<Option<DataType>> =
            (0..count).map(|i| inferred.get(&format!("${}", i + 1)).cloned().flatten()).collect();
        let param_types = (0..count)
            .map(|i| {
                types.get(i).cloned().flatten().unwrap_or_else(|| {
                    param_data_types[i].as_ref().map(|dt| canonical(dt).1).unwrap_or(Type::TEXT)
                })
            })
            .collect();
        Ok(Some(Prepared { sql: sql.to_string(), plan, cube_queries, param_types, param_data_types }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let schema = stmt.plan.schema().as_arrow().clone();
        Ok(field_infos(&schema, format.unwrap_or(&Format::UnifiedText)))
    }
}

pub struct Backend {
    engine: Engine,
    parser: Arc<Parser>,
}

impl Backend {
    /// Runs a plan and wraps its batches as a stream of DataRows (one batch in memory at a time).
    async fn run(&self, planned: Planned, format: &Format, sql: &str, client: String) -> Result<QueryResponse, Error> {
        let log = Arc::new(QueryLog { sql: sql.to_string(), client, start: Instant::now(), rows: AtomicU64::new(0) });
        let (schema, stream) = self.engine.execute_planned(planned).await?;
        let fields = Arc::new(field_infos(&schema, format));
        let f2 = fields.clone();
        let rows = stream.flat_map(move |batch| {
            let out: Vec<PgWireResult<_>> = match batch {
                Ok(b) => match encode_batch(&b, &f2) {
                    Ok(rows) => {
                        log.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                        rows.into_iter().map(Ok).collect()
                    }
                    Err(e) => vec![Err(e)],
                },
                Err(e) => vec![Err(to_pg_error(e.into()))],
            };
            futures::stream::iter(out)
        });
        Ok(QueryResponse::new(fields, rows))
    }
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
            sql = %one_line(&self.sql),
            "query"
        );
    }
}

fn one_line(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 300 { format!("{}…", &s[..s.floor_char_boundary(300)]) } else { s }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let who = client.socket_addr().to_string();
        let statements = self.engine.split(query).map_err(to_pg_error)?;
        let mut out = Vec::with_capacity(statements.len());
        for sql in statements {
            let res = match self.engine.plan_with_cubes(&sql).await {
                Ok(planned) => self.run(planned, &Format::UnifiedText, &sql, who.clone()).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(r) => out.push(Response::Query(r)),
                Err(e) => {
                    tracing::info!(client = %who, sqlstate = e.sqlstate(), error = %e.message, sql = %one_line(&sql), "query failed");
                    let PgWireError::UserError(info) = to_pg_error(e) else { unreachable!() };
                    out.push(Response::Error(info));
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let params = bind_parameters(portal, prepared).map_err(to_pg_error)?;
        let plan = if params.is_empty() {
            prepared.plan.clone()
        } else {
            prepared
                .plan
                .clone()
                .with_param_values(ParamValues::List(params.into_iter().map(Into::into).collect()))
                .map_err(|e| to_pg_error(e.into()))?
        };
        let who = client.socket_addr().to_string();
        let planned = Planned { plan, cube_queries: prepared.cube_queries.clone() };
        let resp = self
            .run(planned, &portal.result_column_format, &prepared.sql, who)
            .await
            .map_err(to_pg_error)?;
        Ok(Response::Query(resp))
    }
}

/// Decodes Bind parameters (text or binary) into DataFusion values of the planned types.
fn bind_parameters(portal: &Portal<Prepared>, prepared: &Prepared) -> Result<Vec<ScalarValue>, Error> {
    let types = &prepared.param_types;
    let bad = |i: usize, e: PgWireError| {
        Error::new(ErrorKind::DataException, format!("parameter ${}: {e}", i + 1))
    };
    let mut out = Vec::with_capacity(portal.parameter_len());
    for i in 0..portal.parameter_len() {
        let t = types.get(i).cloned().unwrap_or(Type::TEXT);
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
        let v = match prepared.param_data_types.get(i).cloned().flatten() {
            Some(dt) if dt != v.data_type() && dt != DataType::Null => v.cast_to(&dt).map_err(|e| {
                Error::new(ErrorKind::DataException, format!("parameter ${}: {}", i + 1, e.find_root()))
            })?,
            _ => v,
        };
        out.push(v);
    }
    Ok(out)
}
