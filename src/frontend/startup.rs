//! The startup handshake: how a client proves who it is (loopback trust without users,
//! SCRAM-SHA-256 with them), the connection slot it takes once authenticated
//! ([`super::admit`]), its process id and cancel key, and the ParameterStatus values it is
//! sent (PostgreSQL's defaults of [`REPORTED`], its user and application name).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::Error;
use crate::pg::settings::REPORTED;

/// How clients prove who they are: loopback trust without users, SCRAM-SHA-256 with them.
pub enum AuthKind {
    Trust(Startup),
    Scram(SASLAuthStartupHandler<Parameters>),
}

/// Authentication, and the connection slot an authenticated client takes: a client that is
/// still connecting, or that never proves who it is, holds no slot.
pub struct Authenticator {
    kind: AuthKind,
    slots: Arc<tokio::sync::Semaphore>,
    /// Where logins, failed or not, are audited.
    audit: Arc<crate::audit::AuditLog>,
}

impl Authenticator {
    /// With users, clients authenticate with SCRAM-SHA-256 (with channel binding to the TLS
    /// certificate, when there is one); without, they are trusted. An authenticated
    /// connection takes one of `slots` (53300 when none is left).
    pub fn new(users: super::auth::Users, slots: Arc<tokio::sync::Semaphore>, tls_cert_pem: Option<&[u8]>, audit: Arc<crate::audit::AuditLog>) -> Result<Self, Error> {
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
            AuthKind::Scram(SASLAuthStartupHandler::new(Arc::new(Parameters)).with_scram(scram))
        };
        Ok(Authenticator { kind, slots, audit })
    }

    /// Whether clients authenticate with SASL (SCRAM), so that 'p' messages are SASL's.
    pub fn uses_sasl(&self) -> bool {
        matches!(self.kind, AuthKind::Scram(_))
    }
}

#[async_trait]
impl StartupHandler for Authenticator {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let was_ready = matches!(client.state(), pgwire::api::PgWireConnectionState::ReadyForQuery);
        let mut admitting = super::admit::Admitting::new(client, &self.slots);
        let done = match &self.kind {
            AuthKind::Trust(t) => t.on_startup(&mut admitting, message).await,
            AuthKind::Scram(s) => s.on_startup(&mut admitting, message).await,
        };
        let result = match (done, admitting.refusal()) {
            (Err(e), _) | (Ok(()), Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
        };
        // The login's audit record: once it succeeds, or when it fails.
        let ready = matches!(client.state(), pgwire::api::PgWireConnectionState::ReadyForQuery);
        match &result {
            Ok(()) if ready && !was_ready => self.audit_login(client, None),
            Err(e) => self.audit_login(client, Some(e)),
            Ok(()) => {}
        }
        result
    }
}

impl Authenticator {
    fn audit_login<C: ClientInfo>(&self, client: &C, failure: Option<&PgWireError>) {
        let md = client.metadata();
        let failure = failure.map(|e| match e {
            PgWireError::UserError(info) => (info.code.clone(), info.message.clone()),
            PgWireError::InvalidPassword(user) => ("28P01".to_string(), format!("password authentication failed for user \"{user}\"")),
            other => ("28000".to_string(), other.to_string()),
        });
        self.audit.record(crate::audit::Record {
            time: chrono::Utc::now(),
            kind: if failure.is_some() { "login_failed" } else { "login" },
            user: md.get(pgwire::api::METADATA_USER).cloned().unwrap_or_default(),
            role: None,
            client: client.socket_addr().to_string(),
            application_name: md.get(pgwire::api::METADATA_APPLICATION_NAME).cloned().unwrap_or_default(),
            statement: String::new(),
            duration_ms: 0.0,
            rows: 0,
            bytes_read: 0,
            rollups: Vec::new(),
            sqlstate: failure.as_ref().map_or_else(|| "00000".to_string(), |(code, _)| code.clone()),
            message: failure.map(|(_, m)| m),
        });
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

/// The process id the next trusted connection gets (pgwire's SCRAM handler draws its own at
/// random).
static NEXT_PID: AtomicU64 = AtomicU64::new(10_000);
