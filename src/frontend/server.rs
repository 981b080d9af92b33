//! The TCP listener: accept loop, connection limit and graceful shutdown (after mini-redis).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::handler::Handlers;
use crate::engine::Engine;
use super::connection::ConnectionLimits;
use crate::error::{Error, Result};

/// Limits for a running server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// How long running queries may go on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Where the server records its failed statements (shared with whoever started it).
    pub failures: Arc<crate::telemetry::RecentFailures>,
    /// Per connection: startup timeout, message size, TLS required, keepalive.
    pub connection: ConnectionLimits,
    /// Server-wide defaults of session settings (`statement_timeout`, idle timeouts).
    pub session_defaults: std::collections::BTreeMap<String, String>,
    /// Connections that may be starting up (TLS, authentication) at once; past it, new
    /// sockets are refused until some finish or time out.
    pub max_startups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(crate::config::DEFAULT_SHUTDOWN_GRACE_SECONDS),
            failures: Default::default(),
            connection: ConnectionLimits::default(),
            session_defaults: Default::default(),
            max_startups: crate::config::DEFAULT_MAX_STARTUPS,
        }
    }
}

/// What a server asks of its clients: TLS (offered when configured; never a plaintext
/// fallback for a client that asked for it) and the users who may log in (none: loopback trust).
#[derive(Default, Clone)]
pub struct Security {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub users: super::auth::Users,
    /// The TLS certificate chain (PEM): with it, SCRAM-SHA-256-PLUS (channel binding,
    /// `tls-server-end-point`) is offered over TLS, so a proof cannot be relayed by a
    /// man in the middle.
    pub tls_cert_pem: Option<Vec<u8>>,
}

/// Serves connections from `listener` until `shutdown` completes, then stops accepting and
/// gives open connections `limits.shutdown_grace` to finish.
///
/// Each accepted socket gets a task ([`super::connection::serve`]) while fewer than
/// `max_startups` others are starting up; past that it is refused at once, so that silent
/// or slow clients cannot pile up. A connection takes one of the `max_connections` slots only
/// when it has authenticated ([`super::admit`]); a CancelRequest needs none, so a runaway
/// query can be cancelled when the server is full.
pub async fn run(listener: TcpListener, engine: Engine, limits: Limits, security: Security, shutdown: impl Future) -> Result<()> {
    // The catalogs list the users who may connect; with none configured (trust on loopback),
    // the default user.
    if !security.users.0.is_empty() {
        engine.set_roles(security.users.0.keys().cloned().collect());
    }
    // Semaphore::MAX_PERMITS is about 2^61; config checks keep max_connections far below.
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let starting = Arc::new(Semaphore::new(limits.max_startups.clamp(1, u32::MAX as usize)));
    // Refusals answer 53300 within 5 s each; past these many at once, sockets just close.
    let refusing = Arc::new(Semaphore::new(64));
    let handlers = Arc::new(Handlers::new(
        engine,
        security.users.clone(),
        limits.failures.clone(),
        slots.clone(),
        Arc::new(limits.session_defaults.clone()),
        security.tls_cert_pem.as_deref(),
    )?);
    let tls = security.tls;
    let connection = Arc::new(limits.connection.clone());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            _ = &mut shutdown => break,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Transient accept errors (e.g. too many open files): back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(start) = starting.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_startups = limits.max_startups, "connection refused: too many clients starting up at once");
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                let cancels = handlers.parts().2;
                tokio::spawn(async move {
                    refuse(socket, peer, &cancels).await;
                    drop(permit);
                });
            }
            continue;
        };
        let handlers = handlers.clone();
        let tls = tls.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            tracing::debug!(%peer, "connection opened");
            // The startup permit is held until authentication ends, then the slot (if any)
            // takes over; `serve` returns when the connection closes.
            let served = super::connection::serve(socket, peer, tls, handlers, &connection, move || drop(start));
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            tracing::debug!(%peer, "connection closed");
        });
    }
    tracing::info!("shutting down: no new connections; waiting for open ones");
    match tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(max as u32)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            open = max - slots.available_permits(),
            "grace period over; returning with connections still open (they end when the process does)"
        ),
    }
    Ok(())
}

/// Answers a connection over the limit the way PostgreSQL does: read its startup packet
/// (declining TLS), then send ErrorResponse 53300 and close; a CancelRequest is carried out.
async fn refuse(mut socket: TcpStream, peer: SocketAddr, cancels: &super::cancel::Cancels) {
    let fut = async {
        loop {
            let len = socket.read_i32().await? as usize;
            if !(8..=10_000).contains(&len) {
                return Ok::<_, std::io::Error>(());
            }
            let mut body = vec![0u8; len - 4];
            socket.read_exact(&mut body).await?;
            let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            // SSLRequest or GSSENCRequest: decline and wait for the real startup packet.
            if code == 80877103 || code == 80877104 {
                socket.write_all(b"N").await?;
                continue;
            }
            // A CancelRequest is honoured even now: a flood of startups is when it matters.
            if code == 80877102 && body.len() >= 12 {
                let pid = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                cancels.cancel_with_key(pid, &body[8..]);
                return Ok(());
            }
            break;
        }
        let e = super::admit::too_many_clients();
        socket.write_all(&error_response("FATAL", &e)).await?;
        socket.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), fut).await.unwrap_or(Ok(())) {
        tracing::debug!(%peer, error = %e, "refusing connection failed");
    }
}

/// Encodes an ErrorResponse message.
fn error_response(severity: &str, e: &Error) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, val) in [(b'S', severity), (b'V', severity), (b'C', e.sqlstate()), (b'M', e.message.as_str())] {
        fields.push(tag);
        fields.extend_from_slice(val.as_bytes());
        fields.push(0);
    }
    if let Some(h) = &e.hint {
        fields.push(b'H');
        fields.extend_from_slice(h.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&fields);
    msg
}
