//! Authentication and TLS: SCRAM-SHA-256 against the users of the config file, stored as
//! PostgreSQL stores them (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the
//! format of `pg_authid.rolpassword`, so a verifier can be copied from a PostgreSQL server),
//! never as passwords; and the TLS acceptor, from a certificate and key in PEM files.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

use crate::error::{Error, Result};

/// PostgreSQL's default iteration count.
pub const ITERATIONS: usize = 4096;

/// A user's SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq)]
pub struct Verifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for a new password, with a random salt.
    pub fn new(password: &str) -> Verifier {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, ITERATIONS);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
            ScramSecret::Verifier { salt, iterations, stored_key, server_key } => {
                Verifier { iterations, salt, stored_key, server_key }
            }
            ScramSecret::SaltedPassword { .. } => unreachable!("verifier_from_salted_password returns a verifier"),
        }
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Result<Verifier> {
        let bad = || {
            Error::config("a user's password must be a SCRAM-SHA-256 verifier")
                .with_hint("write it with `lakecube user add NAME`; the form is SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
        };
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (head, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = head.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let d = |s: &str| B64.decode(s).map_err(|_| bad());
        let v = Verifier {
            iterations: iterations.parse().map_err(|_| bad())?,
            salt: d(salt)?,
            stored_key: d(stored)?,
            server_key: d(server)?,
        };
        if v.iterations == 0 || v.stored_key.len() != 32 || v.server_key.len() != 32 {
            return Err(bad());
        }
        Ok(v)
    }

    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

/// The users a server accepts, by name.
#[derive(Debug, Clone, Default)]
pub struct Users(pub BTreeMap<String, Verifier>);

impl Users {
    pub fn parse(entries: &BTreeMap<String, String>) -> Result<Users> {
        let mut out = BTreeMap::new();
        for (name, text) in entries {
            let v = Verifier::parse(text).map_err(|e| Error::config(format!("user {name}: {}", e.message)).with_hint(e.hint.unwrap_or_default()))?;
            out.insert(name.clone(), v);
        }
        Ok(Users(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered; there is no clear password to give.
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_string()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        match self.0.get(user) {
            Some(v) => Ok((
                ScramSecret::Verifier {
                    salt: v.salt.clone(),
                    iterations: v.iterations,
                    stored_key: v.stored_key.clone(),
                    server_key: v.server_key.clone(),
                },
                None,
            )),
            // Same exchange as a wrong password, as PostgreSQL's mock authentication: a salt
            // that is the same for this name at every attempt, keys nobody's password fits.
            // The proof then fails with 28P01, so an unknown name cannot be told from a known one.
            None => {
                let (salt, stored_key, server_key) = mock_secret(user);
                Ok((ScramSecret::Verifier { salt, iterations: ITERATIONS, stored_key, server_key }, None))
            }
        }
    }
}

/// The salt and keys offered for a user who does not exist: derived from the name and a
/// secret drawn once per server process, so that every attempt sees the same salt.
fn mock_secret(user: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use sha2::{Digest, Sha256};
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let secret = SECRET.get_or_init(rand::random);
    let part = |label: &[u8]| {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(label);
        h.update(user.as_bytes());
        h.finalize().to_vec()
    };
    (part(b"salt")[..16].to_vec(), part(b"stored"), part(b"server"))
}

/// A TLS acceptor for the certificate chain and private key in PEM files, offering ALPN
/// `postgresql` (PostgreSQL 17's direct TLS). Any problem is an error: the server never falls
/// back to plaintext when TLS was asked for.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let hint = "tls_cert and tls_key must be PEM files: the certificate chain and its private key";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::config(format!("cannot read TLS certificate {}: {e}", cert.display())).with_hint(hint))?;
    if certs.is_empty() {
        return Err(Error::config(format!("no certificate in {}", cert.display())).with_hint(hint));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::config(format!("cannot read TLS private key {}: {e}", key.display())).with_hint(hint))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::config(format!("TLS certificate and key do not fit together: {e}")).with_hint(hint))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip_and_bad_ones_are_refused() {
        let v = Verifier::new("pencil");
        let text = v.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert!(!text.contains("pencil"));
        assert_eq!(Verifier::parse(&text).unwrap(), v);
        assert!(Verifier::parse("md5abcdef").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$eA==:eA==").is_err());
    }

    #[test]
    fn unknown_users_get_a_stable_mock_salt() {
        let (a, _, _) = mock_secret("nobody");
        assert_eq!(a, mock_secret("nobody").0, "the same salt at every attempt");
        assert_ne!(a, mock_secret("somebody").0);
        assert_eq!(a.len(), 16);
    }
}
