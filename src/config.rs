//! Settings, layered once: defaults → config file → environment → command-line flags.
//!
//! Flags and environment variables are read by clap (each flag names its `LAKECUBE_*`
//! variable, and clap lets a flag win over its variable); [`Settings::resolve`] then fills what
//! neither gave from the YAML config file, and what that leaves open from the defaults.
//! docs/config.md lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_LAKE: &str = "data/demo";
pub const DEFAULT_CUBE_DEFS: &str = "cube-defs";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5432";
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;

/// The keys a config file may hold. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub lake: Option<String>,
    pub cube_defs: Option<PathBuf>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_grace_seconds: Option<u64>,
    pub trust_remote: Option<bool>,
    pub log: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// User name → SCRAM-SHA-256 verifier (`lakecube user add NAME` writes one).
    pub users: Option<std::collections::BTreeMap<String, String>>,
}

impl FileSettings {
    pub fn load(path: &Path) -> Result<FileSettings> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read config file {}: {e}", path.display()))
                .with_hint("check the --config path (or LAKECUBE_CONFIG)")
        })?;
        if text.trim().is_empty() {
            return Ok(FileSettings::default());
        }
        serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{}:{}:{}", path.display(), l.line(), l.column()))
                .unwrap_or_else(|| path.display().to_string());
            Error::config(format!("{at}: {e}")).with_hint(
                "valid keys: lake, cube_defs, listen, max_connections, shutdown_grace_seconds, trust_remote, log, tls_cert, tls_key, users (see docs/config.md)",
            )
        })
    }
}

/// Values given on the command line or in the environment (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub lake: Option<String>,
    pub cube_defs: Option<PathBuf>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub shutdown_grace_seconds: Option<u64>,
    pub trust_remote: bool,
    pub log: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lake: String,
    /// True when the lake location is the built-in default (no flag, variable or file set it).
    pub lake_is_default: bool,
    pub cube_defs: PathBuf,
    pub listen: String,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub trust_remote: bool,
    pub log: String,
    /// TLS certificate chain and private key (PEM), both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// User name → SCRAM-SHA-256 verifier; empty means loopback-only trust.
    pub users: std::collections::BTreeMap<String, String>,
}

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings> {
        let file = match &o.config {
            Some(p) => FileSettings::load(p)?,
            None => FileSettings::default(),
        };
        let lake_is_default = o.lake.is_none() && file.lake.is_none();
        let s = Settings {
            lake: o.lake.or(file.lake).unwrap_or_else(|| DEFAULT_LAKE.into()),
            lake_is_default,
            cube_defs: o.cube_defs.or(file.cube_defs).unwrap_or_else(|| DEFAULT_CUBE_DEFS.into()),
            listen: o.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into()),
            max_connections: o.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            shutdown_grace: Duration::from_secs(
                o.shutdown_grace_seconds.or(file.shutdown_grace_seconds).unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
            ),
            trust_remote: o.trust_remote || file.trust_remote.unwrap_or(false),
            log: o.log.or(file.log).unwrap_or_else(|| "info".into()),
            tls: match (o.tls_cert.or(file.tls_cert), o.tls_key.or(file.tls_key)) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(Error::config("TLS needs both tls_cert and tls_key")
                        .with_hint("give the certificate chain and its private key, as PEM files"));
                }
            },
            users: file.users.unwrap_or_default(),
        };
        if s.max_connections == 0 {
            return Err(Error::config("max_connections must be at least 1"));
        }
        Ok(s)
    }

    /// The listen address, checked: with no users configured, only loopback is allowed unless
    /// `trust_remote` says otherwise.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        let addr: SocketAddr = self.listen.parse().map_err(|_| {
            Error::config(format!("listen address `{}` is not HOST:PORT", self.listen))
                .with_hint("write an IP and a port, e.g. 127.0.0.1:5432")
        })?;
        if !addr.ip().is_loopback() && !self.trust_remote && self.users.is_empty() {
            return Err(Error::config(format!(
                "refusing to listen on {addr}: no users are configured, so anyone who can reach it could connect without a password"
            ))
            .with_hint("listen on 127.0.0.1, or set trust_remote: true (LAKECUBE_TRUST_REMOTE=true) on a network you trust"));
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let f = write("lake: /from/file\nlisten: 127.0.0.1:6000\n");
        let s = Settings::resolve(Overrides {
            config: Some(f.path().into()),
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.lake, "/from/file");
        assert!(!s.lake_is_default);
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.cube_defs, PathBuf::from(DEFAULT_CUBE_DEFS));
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn unknown_keys_are_errors_with_a_location() {
        let f = write("lake: x\nlisten_port: 5\n");
        let e = Settings::resolve(Overrides { config: Some(f.path().into()), ..Default::default() }).unwrap_err();
        assert!(e.message.contains(":2:"), "{}", e.message);
        assert!(e.message.contains("listen_port"), "{}", e.message);
    }

    #[test]
    fn non_loopback_needs_trust() {
        let s = Settings::resolve(Overrides { listen: Some("0.0.0.0:5432".into()), ..Default::default() }).unwrap();
        assert!(s.listen_addr().unwrap_err().message.contains("refusing"));
        let f = write("users:\n  a: \"SCRAM-SHA-256$4096:c2FsdA==$x:y\"\n");
        let s = Settings::resolve(Overrides { config: Some(f.path().into()), listen: Some("0.0.0.0:5432".into()), ..Default::default() }).unwrap();
        assert!(s.listen_addr().is_ok(), "with users, other addresses are allowed");
        let s = Settings::resolve(Overrides { listen: Some("0.0.0.0:5432".into()), trust_remote: true, ..Default::default() })
            .unwrap();
        assert!(s.listen_addr().is_ok());
    }
}
