//! The connection slot an authenticated client takes.
//!
//! `max_connections` counts authenticated connections only, so that clients still starting
//! up (or never finishing: a silent socket, a wrong password) cannot lock everyone out. The
//! slot is taken at the one moment every way of authenticating goes through: when the server
//! sends AuthenticationOk. [`Admitting`] is the client as the authentication handlers see it,
//! the same connection except that sending AuthenticationOk first takes a slot; when none is
//! left, that message and all after it are held back, and [`Admitting::refusal`] gives the
//! 53300 error ("sorry, too many clients already") the handler then returns, so the client is
//! never told it is in. The slot is kept in the connection's session extensions, freed when
//! it closes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Sink;
use pgwire::api::{ClientInfo, PgWireConnectionState, SessionExtensions};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, ProtocolVersion};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, ErrorKind};

/// A connection's place among `max_connections`, held while it lives.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// The client, taking a slot as it is sent AuthenticationOk.
pub struct Admitting<'a, C> {
    inner: &'a mut C,
    slots: &'a Arc<Semaphore>,
    refused: bool,
}

impl<'a, C: ClientInfo> Admitting<'a, C> {
    pub fn new(inner: &'a mut C, slots: &'a Arc<Semaphore>) -> Self {
        Admitting { inner, slots, refused: false }
    }

    /// Takes a slot if the connection has none; false when none is left.
    fn admit(&self) -> bool {
        if self.inner.session_extensions().get::<Slot>().is_some() {
            return true;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.inner.session_extensions().insert(Slot(permit));
                true
            }
            Err(_) => false,
        }
    }

    /// The error to end the connection with when it authenticated but found no slot.
    pub fn refusal(&self) -> Option<PgWireError> {
        if !self.refused {
            return None;
        }
        let user = self.inner.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
        tracing::warn!(peer = %self.inner.socket_addr(), %user, "connection refused: too many clients");
        let e = too_many_clients();
        let mut info = ErrorInfo::new("FATAL".into(), e.sqlstate().into(), e.message);
        info.hint = e.hint;
        Some(PgWireError::UserError(Box::new(info)))
    }
}

/// PostgreSQL's answer when every slot is taken.
pub fn too_many_clients() -> Error {
    Error::new(ErrorKind::TooManyConnections, "sorry, too many clients already")
        .with_hint("raise max_connections in the lakecube config, or close idle connections")
}

// The error type stays the client's: the handlers' bounds (`PgWireError: From<C::Error>`)
// then hold for this view as they do for the client.
impl<C> Sink<PgWireBackendMessage> for Admitting<'_, C>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin,
{
    type Error = C::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), C::Error> {
        if !self.refused && matches!(item, PgWireBackendMessage::Authentication(Authentication::Ok)) && !self.admit() {
            self.refused = true;
        }
        if self.refused {
            // Held back: the client gets the 53300 error instead.
            return Ok(());
        }
        Pin::new(&mut *self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Pin::new(&mut *self.inner).poll_close(cx)
    }
}

impl<C: ClientInfo> ClientInfo for Admitting<'_, C> {
    fn socket_addr(&self) -> std::net::SocketAddr {
        self.inner.socket_addr()
    }
    fn is_secure(&self) -> bool {
        self.inner.is_secure()
    }
    fn protocol_version(&self) -> ProtocolVersion {
        self.inner.protocol_version()
    }
    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.inner.set_protocol_version(version)
    }
    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.inner.pid_and_secret_key()
    }
    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.inner.set_pid_and_secret_key(pid, secret_key)
    }
    fn state(&self) -> PgWireConnectionState {
        self.inner.state()
    }
    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.inner.set_state(new_state)
    }
    fn transaction_status(&self) -> TransactionStatus {
        self.inner.transaction_status()
    }
    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.inner.set_transaction_status(new_status)
    }
    fn metadata(&self) -> &HashMap<String, String> {
        self.inner.metadata()
    }
    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.inner.metadata_mut()
    }
    fn session_extensions(&self) -> &SessionExtensions {
        self.inner.session_extensions()
    }
    fn sni_server_name(&self) -> Option<&str> {
        self.inner.sni_server_name()
    }
    fn client_certificates<'a>(&self) -> Option<&[rustls_pki_types::CertificateDer<'a>]> {
        self.inner.client_certificates()
    }
}
