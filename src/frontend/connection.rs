//! One client connection, from the accepted socket to its close: TLS negotiation and
//! authentication within `startup_timeout`, then messages until the client leaves or a
//! session timeout ends it.
//!
//! This is pgwire's `process_socket` loop, written here so that lakecube decides what pgwire
//! does not let it: how long a startup may take, how large a message may be in each phase
//! ([`super::framing`]), what happens to a client idle for too long
//! (`idle_session_timeout`, `idle_in_transaction_session_timeout`), that a plaintext client is
//! refused when TLS is required, that failed logins are logged, and that a panic in a handler
//! becomes an error for that client instead of a silently dropped connection. The messages
//! themselves still go through pgwire's `process_message`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::framing::{FrameLimits, Guarded};
use super::handler::{Handlers, Prepared, session_timeouts};
use crate::error::{Error, ErrorKind};

/// How long a connection may take to start, how large its messages may be, whether it must
/// use TLS.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// TLS negotiation and authentication together (PostgreSQL's `authentication_timeout`).
    pub startup_timeout: Duration,
    /// The largest message after authentication.
    pub max_message_size: usize,
    /// Refuse clients that did not negotiate TLS (28000), as PostgreSQL's `hostssl`.
    pub require_tls: bool,
    /// TCP keepalive idle time: a peer that vanished is noticed and its slot freed.
    pub keepalive: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            startup_timeout: Duration::from_secs(10),
            max_message_size: crate::config::DEFAULT_MESSAGE_LIMIT,
            require_tls: false,
            keepalive: Duration::from_secs(60),
        }
    }
}

/// Serves one accepted connection until it ends; `authenticated` is called once, when the
/// client has authenticated (the server then stops counting it as starting up).
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handlers: Arc<Handlers>,
    limits: &ConnectionLimits,
    authenticated: impl FnOnce(),
) -> std::io::Result<()> {
    let mut authenticated = Some(authenticated);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(limits.keepalive)
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive);
    let deadline = tokio::time::Instant::now() + limits.startup_timeout;
    let negotiated = match tokio::time::timeout_at(deadline, negotiate_tls::<Prepared>(socket, tls)).await {
        Ok(r) => r?,
        Err(_) => {
            tracing::info!(%peer, "connection closed: no startup within startup_timeout");
            return Ok(());
        }
    };
    // A direct TLS connection without TLS configured.
    let Some(framed) = negotiated else { return Ok(()) };
    let parts = framed.into_parts();
    let secure = parts.codec.client_info.is_secure;
    let frame_limits = FrameLimits::new(limits.max_message_size);
    let guarded = Guarded::new(parts.io, parts.read_buf, false, handlers.uses_sasl(), frame_limits.clone());
    let mut new_parts = FramedParts::new(guarded, parts.codec);
    new_parts.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(new_parts);

    let (startup, backend, cancels) = handlers.parts();
    // Notices a client that went away while its statement runs (see `watch_disconnect`).
    let mut peer_socket = match socket.get_ref().get_ref() {
        pgwire::tokio::server::MaybeTls::Plain(tcp) => socket2::SockRef::from(tcp).try_clone().ok(),
        pgwire::tokio::server::MaybeTls::Tls(tls) => socket2::SockRef::from(tls.get_ref().0).try_clone().ok(),
        _ => None,
    };
    let mut watcher = AbortOnDrop(None);
    // Idle timeouts apply only while the client has been told ReadyForQuery, as in
    // PostgreSQL: not between the messages of an extended-query sequence (pg-cursor's
    // Execute + Flush, read slowly).
    let mut ready_for_query = true;
    let (simple, extended) = (backend.clone(), backend);
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let authenticating =
            matches!(socket.state(), PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress);
        let next = if authenticating {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(m) => m,
                Err(_) => {
                    let user = socket.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                    tracing::warn!(%peer, %user, "login failed: authentication not finished within startup_timeout");
                    break;
                }
            }
        } else {
            let in_transaction = socket.transaction_status() != TransactionStatus::Idle;
            match ready_for_query.then(|| session_timeouts(&socket, in_transaction)).flatten() {
                Some((limit, error)) => match tokio::time::timeout(limit, socket.next()).await {
                    Ok(m) => m,
                    Err(_) => {
                        tracing::info!(%peer, reason = %error.message, "connection closed");
                        let _ = send_fatal(&mut socket, error).await;
                        break;
                    }
                },
                None => socket.next().await,
            }
        };
        let msg = match next {
            None => break,
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                // A refused frame (framing), or one pgwire could not decode.
                let message = socket.get_ref().failure().map(|f| f.0.clone()).unwrap_or_else(|| e.to_string());
                tracing::warn!(%peer, error = %message, "protocol violation; connection closed");
                let _ = send_fatal(&mut socket, Error::new(ErrorKind::ProtocolViolation, message)).await;
                break;
            }
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        if limits.require_tls && !secure && matches!(msg, PgWireFrontendMessage::Startup(_)) {
            let user = match &msg {
                PgWireFrontendMessage::Startup(s) => s.parameters.get("user").cloned().unwrap_or_default(),
                _ => String::new(),
            };
            tracing::warn!(%peer, %user, "login failed: TLS is required and the client did not ask for it");
            let e = Error::new(ErrorKind::InvalidAuthorization, format!("connection without TLS refused for user \"{user}\": this server requires TLS"))
                .with_hint("connect with sslmode=require (or verify-full)");
            let _ = send_fatal(&mut socket, e).await;
            break;
        }
        let is_extended = msg.is_extended_query();
        // After these the server sends ReadyForQuery; after the other messages of the
        // extended protocol it waits for more.
        ready_for_query = matches!(msg, PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Sync(_));
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        // Replies to a Query, and to the extended protocol's messages up to its Sync or
        // Flush, go out together (see FrameLimits::corked).
        let is_query = matches!(msg, PgWireFrontendMessage::Query(_));
        let corked = !authenticating
            && (is_query
                || matches!(
                    msg,
                    PgWireFrontendMessage::Parse(_)
                        | PgWireFrontendMessage::Bind(_)
                        | PgWireFrontendMessage::Describe(_)
                        | PgWireFrontendMessage::Execute(_)
                        | PgWireFrontendMessage::Close(_)
                ));
        frame_limits.corked.store(corked, Ordering::Relaxed);
        let outcome = std::panic::AssertUnwindSafe(process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        ))
        .catch_unwind()
        .await;
        // Whatever comes next (an error, a fatal message, the next message's replies) is
        // flushed as pgwire asks; a Query's replies end here.
        frame_limits.corked.store(false, Ordering::Relaxed);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(mut e)) => {
                if authenticating {
                    let user = socket.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
                    tracing::warn!(%peer, %user, reason = %e, "login failed");
                }
                errors.on_error(&socket, &mut e);
                let fatal = e.is_fatal();
                process_error(&mut socket, e, is_extended).await?;
                if fatal {
                    break;
                }
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!(%peer, panic = %what, "a handler panicked; connection closed");
                let e = Error::internal(format!("internal error: {what}"))
                    .with_hint("this is a bug in lakecube: please report it with the statement that caused it");
                let _ = send_fatal(&mut socket, e).await;
                break;
            }
        }
        if is_query {
            socket.flush().await?;
        }
        if is_cancel {
            break;
        }
        if authenticating
            && !matches!(socket.state(), PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress)
        {
            frame_limits.authenticated.store(true, Ordering::Relaxed);
            ready_for_query = true;
            handlers.open_session(&socket);
            if let Some(sock) = peer_socket.take() {
                watcher.0 = Some(tokio::spawn(watch_disconnect(sock, socket.pid_and_secret_key().0, cancels.clone())));
            }
            if let Some(f) = authenticated.take() {
                f();
            }
            let user = socket.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            tracing::debug!(%peer, %user, tls = secure, "authenticated");
        }
    }
    drop(watcher);
    Ok(())
}

/// Watches the client's socket without reading it: a connection closed by the client (end
/// of stream, or reset) cancels the statement it left running. Without it, a
/// query that sends nothing until it ends (a count over a huge join) went on using the CPU for
/// as long as it took after its client was gone. (PostgreSQL's client_connection_check_interval.)
async fn watch_disconnect(sock: socket2::Socket, pid: i32, cancels: Arc<super::cancel::Cancels>) {
    // A second registration of the same socket (a dup'd descriptor) with tokio's reactor:
    // its readiness reports the peer's FIN or reset (EPOLLRDHUP) even while unread bytes
    // (a Terminate sent before closing, a TLS close_notify) wait in the socket.
    let std: std::net::TcpStream = sock.into();
    if std.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(std) else { return };
    loop {
        match stream.ready(tokio::io::Interest::READABLE).await {
            Ok(r) if r.is_read_closed() || r.is_error() => break,
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(_) => break,
        }
    }
    tracing::info!(pid, "client went away; cancelling its statement");
    cancels.cancel(pid);
}

/// Aborts the disconnect watcher when the connection ends, however it ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Sends `e` as a FATAL ErrorResponse (the connection closes after it).
async fn send_fatal<S>(socket: &mut S, e: Error) -> Result<(), PgWireError>
where
    S: futures::Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<S::Error>,
{
    let mut info = ErrorInfo::new("FATAL".to_string(), e.sqlstate().to_string(), e.message);
    info.hint = e.hint;
    socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await?;
    Ok(())
}
