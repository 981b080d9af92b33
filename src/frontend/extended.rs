//! The extended query protocol: Parse plans a statement (or recognises a session statement,
//! planning a DECLARE's query) and infers its parameters' types ([`Parser`]), Bind decodes
//! the parameter values (text or binary) into DataFusion values, Describe answers for
//! statements, portals and cursors declared in SQL, and Execute streams rows to the client,
//! a page at a time with a row limit, keeping the rest of the stream in the portal. Each
//! statement runs through [`Backend::statement`], the path the simple protocol takes too; this
//! file imports [`super::handler`], never the other way round.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use rust_decimal::Decimal;

use super::cancel::plan_in_task;
use super::command::{Command, Outcome, command_columns, parse_command};
use super::encode::{canonical, field_infos, to_pg_error};
use super::cancel::Audited;
use super::handler::{Backend, Params, Parser, Prepared, PreparedKind, Request, command_tag, log_failure, log_sent_failure, send_report, session_of, who};
use crate::error::{Error, ErrorKind};

impl Params {
    /// The parameters of a statement planned at Parse: the type the client declared for each,
    /// else the PostgreSQL type of what DataFusion inferred, else text.
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

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let cell = session_of(client, &self.engine, &self.cancels, &self.defaults)?;
        let info = cell.session.lock().await.info();
        // A statement that fails at Parse is audited as one that fails at Execute.
        let audited = Audited::new(self.engine.audit().clone(), &info.user, &info.settings, super::handler::address(&who(client)));
        let fail = |e: Error| {
            log_failure(&self.failures, &who(client), sql, &e);
            audited.clone().record(sql, 0, 0, Some((e.sqlstate().to_string(), e.message.clone())));
            to_pg_error(e)
        };
        // Parse plans the statement: statement_timeout and cancel cover it.
        let token = self.cancels.start(cell.pid, &cell.secret);
        cell.clock.restart();
        let timeout = info.settings.statement_timeout_ms();
        let role = info.settings.role();
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
            return Ok(Some(Prepared { sql: sql.to_string(), role, kind: PreparedKind::Command { command, columns, params, declared } }));
        }
        // COPY … TO STDOUT: its query is planned now, its rows copied out at Execute.
        let copy = crate::pg::copy::parse_copy(sql).transpose().map_err(fail)?;
        let text = copy.as_ref().map_or(sql, |c| c.query.as_str());
        let Some(planned) = plan_in_task(&self.engine, text, info, &token, &cell.clock, timeout).await.map_err(fail)? else {
            return Ok(None);
        };
        let params = Params::of(&planned.plan, types).map_err(fail)?;
        Ok(Some(Prepared { sql: sql.to_string(), role, kind: PreparedKind::Query { planned, params, copy } }))
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
            // A COPY returns no rows: its data comes as CopyData (Describe gives NoData).
            PreparedKind::Query { copy: Some(_), .. } => Vec::new(),
            PreparedKind::Query { planned, .. } => field_infos(&planned.schema(), format),
            PreparedKind::Command { columns: Some(schema), .. } => field_infos(schema, format),
            PreparedKind::Command { columns: None, .. } => Vec::new(),
        })
    }
}

/// How many columns a prepared statement returns, where known before it runs.
fn result_columns(stmt: &Prepared) -> Option<usize> {
    match &stmt.kind {
        PreparedKind::Query { copy: Some(_), .. } => Some(0),
        PreparedKind::Query { planned, .. } => Some(planned.schema().fields().len()),
        PreparedKind::Command { columns, .. } => columns.as_ref().map(|c| c.fields().len()),
    }
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
            let cell = session_of(client, &self.engine, &self.cancels, &self.defaults)?;
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
        let cell = session_of(client, &self.engine, &self.cancels, &self.defaults)?;
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
            // A failed portal (a COPY stopped mid-stream too) does not run again.
            let response = result.inspect_err(|_| *st = PortalExecutionState::Finished)?;
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
                    log_sent_failure(&self.failures, &who(client), &portal.statement.statement.sql, &e);
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
        let cell = session_of(client, &self.engine, &self.cancels, &self.defaults)?;
        let prepared = &portal.statement.statement;
        if let Some(columns) = result_columns(prepared) {
            super::encode::check_result_formats(&portal.result_column_format, columns).map_err(to_pg_error)?;
        }
        let values = bind_parameters(portal, prepared).map_err(to_pg_error)?;
        let params = (!values.is_empty()).then(|| ParamValues::List(values.into_iter().map(Into::into).collect()));
        let who = who(client);
        let mut status = client.transaction_status();
        let outcome = self
            .statement(&cell, Request { sql: &prepared.sql, prepared: Some(prepared), params, format: &portal.result_column_format, who: &who }, &mut status)
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
            Outcome::Copy(copy) => match copy.send(client).await {
                Ok(tag) => Response::Execution(tag),
                Err(e) => {
                    log_sent_failure(&self.failures, &who, &prepared.sql, &e);
                    return Err(e);
                }
            },
        })
    }
}

/// The element type of an array parameter: what DataFusion inferred for it, else what the
/// client declared.
fn array_element(inferred: Option<&DataType>, declared: &Type) -> Option<DataType> {
    match inferred {
        Some(DataType::List(f) | DataType::LargeList(f)) => return Some(f.data_type().clone()),
        Some(dt) if *dt != DataType::Null => return None,
        _ => {}
    }
    let postgres_types::Kind::Array(element) = declared.kind() else { return None };
    Some(match *element {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
        _ => DataType::Utf8,
    })
}

/// An array parameter as a list of `element` values: text in PostgreSQL's `{…}` form
/// ([`crate::pg::array`]), binary as PostgreSQL's array format (through postgres-types).
fn bind_array(portal: &Portal<Prepared>, i: usize, declared: &Type, element: &DataType) -> Result<ScalarValue, Error> {
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, StringArray};
    let bad = |e: PgWireError| Error::new(ErrorKind::InvalidTextRepresentation, format!("parameter ${}: {e}", i + 1));
    let null_list = || {
        ScalarValue::try_from(&DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(element.clone(), true))))
            .map_err(Error::from)
    };
    if !portal.parameter_format.is_binary(i) {
        return match portal.parameter::<String>(i, &Type::TEXT).map_err(bad)? {
            Some(text) => crate::pg::array::list_value(&text, element).map_err(|e| Error { message: format!("parameter ${}: {}", i + 1, e.message), ..e }),
            None => null_list(),
        };
    }
    let postgres_types::Kind::Array(item) = declared.kind() else {
        return Err(Error::new(ErrorKind::ProtocolViolation, format!("parameter ${} is binary but not declared as an array type", i + 1))
            .with_hint("declare the parameter's array type at Parse, or send it as text"));
    };
    macro_rules! decode {
        ($t:ty, $array:ty) => {
            portal.parameter::<Vec<Option<$t>>>(i, declared).map_err(bad)?.map(|v| Arc::new(<$array>::from(v)) as ArrayRef)
        };
    }
    let values = match *item {
        Type::BOOL => decode!(bool, BooleanArray),
        Type::INT2 => decode!(i16, Int16Array),
        Type::INT4 => decode!(i32, Int32Array),
        Type::INT8 => decode!(i64, Int64Array),
        Type::FLOAT4 => decode!(f32, Float32Array),
        Type::FLOAT8 => decode!(f64, Float64Array),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => decode!(String, StringArray),
        ref other => {
            return Err(Error::new(
                ErrorKind::FeatureNotSupported,
                format!("parameter ${} is a binary {}[], which lakecube does not accept yet", i + 1, other.name()),
            )
            .with_hint("send the parameter as text, in PostgreSQL's {a,b} form"));
        }
    };
    match values {
        Some(values) => {
            let values = datafusion::arrow::compute::cast(&values, element).map_err(|e| Error::new(ErrorKind::DataException, format!("parameter ${}: {e}", i + 1)))?;
            Ok(crate::pg::array::list_of(values))
        }
        None => null_list(),
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
        if let Some(element) = array_element(param_data_types.get(i).cloned().flatten().as_ref(), &t) {
            out.push(bind_array(portal, i, &t, &element)?);
            continue;
        }
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
