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
/// The largest message accepted before authentication (a startup packet or a SASL message;
/// PostgreSQL allows 10,000 bytes for the startup packet); also the least `max_message_size`
/// may be.
pub const STARTUP_MESSAGE_LIMIT: usize = 10_000;
/// Default for the largest message after authentication (`max_message_size`).
pub const DEFAULT_MESSAGE_LIMIT: usize = 64 << 20;
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;
/// TLS and authentication must be done within this (PostgreSQL's authentication_timeout is 60 s).
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 10_000;
/// Connections that may be starting up (TLS, authentication) at once.
pub const DEFAULT_MAX_STARTUPS: usize = 256;
/// The most `max_connections` may be (PostgreSQL's own maximum).
pub const MAX_CONNECTIONS_LIMIT: usize = 262_143;

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
    /// User name → SCRAM-SHA-256 verifier (`lakecube user add NAME` writes one), or
    /// `{ password: VERIFIER, roles: [..], attributes: {..} }` ([`Account`]).
    pub users: Option<std::collections::BTreeMap<String, serde_yaml::Value>>,
    /// What each role may do besides reading the cubes its policies give it ([`RoleSettings`]).
    pub roles: Option<std::collections::BTreeMap<String, RoleSettings>>,
    /// Whether clients must use TLS (default: when listening beyond loopback with users).
    pub require_tls: Option<bool>,
    /// The audit log ([`AuditSettings`]).
    pub audit: Option<AuditFile>,
    pub memory_limit: Option<Value>,
    pub query_memory_limit: Option<Value>,
    pub spill_dir: Option<PathBuf>,
    pub spill_limit: Option<Value>,
    pub statement_timeout: Option<Value>,
    pub idle_session_timeout: Option<Value>,
    pub idle_in_transaction_session_timeout: Option<Value>,
    pub startup_timeout: Option<Value>,
    pub max_message_size: Option<Value>,
    pub max_startups: Option<Value>,
    pub background_rows: Option<Value>,
}

impl FileSettings {
    /// The file's limits, as given.
    fn limits(&self) -> LimitValues {
        LimitValues {
            memory_limit: self.memory_limit.clone(),
            query_memory_limit: self.query_memory_limit.clone(),
            spill_dir: self.spill_dir.clone(),
            spill_limit: self.spill_limit.clone(),
            statement_timeout: self.statement_timeout.clone(),
            idle_session_timeout: self.idle_session_timeout.clone(),
            idle_in_transaction_session_timeout: self.idle_in_transaction_session_timeout.clone(),
            startup_timeout: self.startup_timeout.clone(),
            max_message_size: self.max_message_size.clone(),
            max_startups: self.max_startups.clone(),
            background_rows: self.background_rows.clone(),
        }
    }
}

/// A size or duration as written in a config file: a number or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(u64),
    Text(String),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Text(t) => t.clone(),
        }
    }
}

/// The resource and time limits, as given (sizes like `4GB`, durations like `30s`); the
/// same keys in the config file, as `LAKECUBE_*` variables and as `serve` flags.
#[derive(Debug, Default, Clone)]
pub struct LimitValues {
    pub memory_limit: Option<Value>,
    pub query_memory_limit: Option<Value>,
    pub spill_dir: Option<PathBuf>,
    pub spill_limit: Option<Value>,
    pub statement_timeout: Option<Value>,
    pub idle_session_timeout: Option<Value>,
    pub idle_in_transaction_session_timeout: Option<Value>,
    pub startup_timeout: Option<Value>,
    pub max_message_size: Option<Value>,
    pub max_startups: Option<Value>,
    pub background_rows: Option<Value>,
}

impl LimitValues {
    /// Each value of `self`, else of `other`.
    fn or(self, other: LimitValues) -> LimitValues {
        LimitValues {
            memory_limit: self.memory_limit.or(other.memory_limit),
            query_memory_limit: self.query_memory_limit.or(other.query_memory_limit),
            spill_dir: self.spill_dir.or(other.spill_dir),
            spill_limit: self.spill_limit.or(other.spill_limit),
            statement_timeout: self.statement_timeout.or(other.statement_timeout),
            idle_session_timeout: self.idle_session_timeout.or(other.idle_session_timeout),
            idle_in_transaction_session_timeout: self
                .idle_in_transaction_session_timeout
                .or(other.idle_in_transaction_session_timeout),
            startup_timeout: self.startup_timeout.or(other.startup_timeout),
            max_message_size: self.max_message_size.or(other.max_message_size),
            max_startups: self.max_startups.or(other.max_startups),
            background_rows: self.background_rows.or(other.background_rows),
        }
    }
}

/// The limits, checked and in their units. The engine builds its memory and priority settings
/// from them (`engine::Options::from_limits`), filling what is not given with its defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes all queries together may reserve (`memory_limit`); `None`: the engine's default.
    pub memory_limit: Option<u64>,
    /// Bytes one query may reserve (`query_memory_limit`); `None`: the engine's default.
    pub query_memory_limit: Option<u64>,
    /// Where spill files go; `None`: the OS temp dir.
    pub spill_dir: Option<PathBuf>,
    /// Bytes of spill files all queries together may write; `None`: the engine's default.
    pub spill_limit: Option<u64>,
    /// Server defaults of session settings, by name (statement_timeout, idle timeouts).
    pub session_defaults: std::collections::BTreeMap<String, String>,
    pub startup_timeout: Duration,
    pub max_message_size: usize,
    pub max_startups: usize,
    /// `background_rows`: `None` when not given (the engine's default applies), `Some(None)`
    /// when `off`, `Some(Some(rows))` for a number of estimated rows.
    pub background_rows: Option<Option<u64>>,
}

impl Limits {
    fn resolve(v: LimitValues) -> Result<Limits> {
        let size = |key: &str, v: &Option<Value>| -> Result<Option<u64>> {
            v.as_ref()
                .map(|v| {
                    parse_size(&v.text()).ok_or_else(|| {
                        Error::config(format!("{key}: `{}` is not a size", v.text()))
                            .with_hint("write bytes or a number with a unit: 512MB, 4GB (kB, MB, GB, TB)")
                    })
                })
                .transpose()
        };
        let duration = |key: &str, v: &Option<Value>| -> Result<Option<u64>> {
            v.as_ref()
                .map(|v| {
                    crate::pg::settings::parse_duration_ms(&v.text())
                        .filter(|ms| *ms <= i32::MAX as u64)
                        .ok_or_else(|| {
                            Error::config(format!("{key}: `{}` is not a duration (at most 24 days)", v.text()))
                                .with_hint("write milliseconds or a number with a unit: 500ms, 30s, 5min, 1h")
                        })
                })
                .transpose()
        };
        let memory_limit = size("memory_limit", &v.memory_limit)?;
        let query_memory_limit = size("query_memory_limit", &v.query_memory_limit)?;
        let spill_limit = size("spill_limit", &v.spill_limit)?;
        let mut session_defaults = std::collections::BTreeMap::new();
        for (key, value) in [
            ("statement_timeout", &v.statement_timeout),
            ("idle_session_timeout", &v.idle_session_timeout),
            ("idle_in_transaction_session_timeout", &v.idle_in_transaction_session_timeout),
        ] {
            if let Some(ms) = duration(key, value)? {
                session_defaults.insert(key.to_string(), format!("{ms}ms"));
            }
        }
        let startup_timeout = Duration::from_millis(duration("startup_timeout", &v.startup_timeout)?.unwrap_or(DEFAULT_STARTUP_TIMEOUT_MS));
        if startup_timeout.is_zero() {
            return Err(Error::config("startup_timeout must be more than 0").with_hint("e.g. startup_timeout: 10s"));
        }
        let max_message_size = size("max_message_size", &v.max_message_size)?
            .map_or(DEFAULT_MESSAGE_LIMIT, |b| b as usize);
        if !(STARTUP_MESSAGE_LIMIT..=1 << 30).contains(&max_message_size) {
            return Err(Error::config(format!("max_message_size {max_message_size} must be between 10kB and 1GB"))
                .with_hint("e.g. max_message_size: 64MB"));
        }
        let max_startups = match &v.max_startups {
            Some(n) => n.text().parse::<usize>().ok().filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n)).ok_or_else(|| {
                Error::config(format!("max_startups `{}` must be a number from 1 to {MAX_CONNECTIONS_LIMIT}", n.text()))
                    .with_hint("e.g. max_startups: 256")
            })?,
            None => DEFAULT_MAX_STARTUPS,
        };
        let background_rows = match &v.background_rows {
            None => None,
            Some(v) => Some(match v.text().trim() {
                "off" => None,
                n => Some(n.replace('_', "").parse::<u64>().map_err(|_| {
                    Error::config(format!("background_rows `{}` is neither a number of rows nor off", v.text()))
                        .with_hint("e.g. background_rows: 100000000 (statements estimated beyond it run at background priority), or off")
                })?),
            }),
        };
        Ok(Limits {
            memory_limit,
            query_memory_limit,
            spill_dir: v.spill_dir,
            spill_limit,
            session_defaults,
            startup_timeout,
            max_message_size,
            max_startups,
            background_rows,
        })
    }
}

/// Parses a size: bytes, or a number with a unit (`kB`, `MB`, `GB`, `TB`, as PostgreSQL
/// writes them; case-insensitive, `B` optional).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return None,
    };
    let bytes = n * factor as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
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
                "valid keys: lake, cube_defs, listen, max_connections, shutdown_grace_seconds, trust_remote, log, tls_cert, tls_key, users, roles, require_tls, memory_limit, query_memory_limit, spill_dir, spill_limit, statement_timeout, idle_session_timeout, idle_in_transaction_session_timeout, startup_timeout, max_message_size, max_startups, background_rows (see docs/config.md)",
            )
        })
    }
}

/// A user with roles and attributes (the mapping form of a `users:` entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The SCRAM-SHA-256 verifier.
    pub password: String,
    /// The roles the user has: access policies name them (Cube's groups).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Values row filters use (`{ userAttributes.region }`): a text, number or boolean, or a
    /// list of them.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, serde_yaml::Value>,
}

/// What a role may do besides reading the cubes its policies give it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// Whether the role reads the raw lake tables (schema `lake`); by default no role does.
    #[serde(default)]
    pub lake: bool,
    /// Whether the role reads the audit log and the lake's history (schema `lakecube`); by
    /// default no role does.
    #[serde(default)]
    pub audit: bool,
}

/// The audit log's keys in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub dir: Option<PathBuf>,
    pub keep_files: Option<usize>,
    pub memory: Option<usize>,
    pub redact: Option<String>,
}

/// The audit log: where its daily JSON-lines files go (default: `_audit` in a local lake;
/// memory only for a lake in an object store unless `dir` is given), how many files are
/// kept, how many records `lakecube.query_log` shows, and whether literals are redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub dir: Option<PathBuf>,
    pub keep_files: usize,
    pub memory: usize,
    pub redact_literals: bool,
}

impl AuditSettings {
    fn resolve(file: Option<AuditFile>, lake: &str) -> Result<AuditSettings> {
        let file = file.unwrap_or_default();
        let local = !lake.contains("://") || lake.starts_with("file://");
        let dir = file.dir.or_else(|| local.then(|| PathBuf::from(lake.trim_start_matches("file://")).join("_audit")));
        let redact_literals = match file.redact.as_deref() {
            None | Some("none") => false,
            Some("literals") => true,
            Some(other) => {
                return Err(Error::config(format!("audit.redact: unknown value `{other}`"))
                    .with_hint("audit.redact is `none` (statements as sent) or `literals` (string and number literals as ?)"));
            }
        };
        Ok(AuditSettings { dir, keep_files: file.keep_files.unwrap_or(30).max(1), memory: file.memory.unwrap_or(10_000), redact_literals })
    }
}

/// A user's roles and attributes, from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAccess {
    pub roles: Vec<String>,
    /// Each attribute's values, as text.
    pub attributes: std::collections::BTreeMap<String, Vec<String>>,
}

/// Splits the `users:` entries into verifiers and access: a text is a verifier (a user with no
/// role), a mapping an [`Account`].
pub fn split_users(
    entries: std::collections::BTreeMap<String, serde_yaml::Value>,
) -> Result<(std::collections::BTreeMap<String, String>, std::collections::BTreeMap<String, UserAccess>)> {
    let mut verifiers = std::collections::BTreeMap::new();
    let mut access = std::collections::BTreeMap::new();
    for (name, value) in entries {
        let account: Account = match value {
            serde_yaml::Value::String(v) => Account { password: v, ..Default::default() },
            v @ serde_yaml::Value::Mapping(_) => serde_yaml::from_value(v).map_err(|e| {
                Error::config(format!("user {name}: {e}")).with_hint("write `NAME: VERIFIER`, or `NAME: {{ password: VERIFIER, roles: [..], attributes: {{..}} }}`")
            })?,
            _ => {
                return Err(Error::config(format!("user {name}: not a verifier nor a mapping"))
                    .with_hint("write `NAME: VERIFIER`, or `NAME: { password: VERIFIER, roles: [..], attributes: {..} }`"));
            }
        };
        let mut attributes = std::collections::BTreeMap::new();
        for (k, v) in account.attributes {
            let scalar = |v: &serde_yaml::Value| match v {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            let values = match &v {
                serde_yaml::Value::Sequence(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
                other => scalar(other).map(|s| vec![s]),
            };
            let values = values.ok_or_else(|| {
                Error::config(format!("user {name}: attribute `{k}` is not a text, number, boolean or a list of them"))
                    .with_hint("e.g. region: Bretagne, or stores: [FR-PAR-001, FR-PAR-004]")
            })?;
            attributes.insert(k, values);
        }
        verifiers.insert(name.clone(), account.password);
        access.insert(name, UserAccess { roles: account.roles, attributes });
    }
    Ok((verifiers, access))
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
    pub require_tls: Option<bool>,
    pub limits: LimitValues,
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
    /// Each configured user's roles and attributes.
    pub access: std::collections::BTreeMap<String, UserAccess>,
    /// Role name → what it may do besides its policies.
    pub roles: std::collections::BTreeMap<String, RoleSettings>,
    /// As configured; [`Settings::require_tls`] applies the default.
    pub require_tls: Option<bool>,
    pub audit: AuditSettings,
    pub limits: Limits,
}

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings> {
        let file = match &o.config {
            Some(p) => FileSettings::load(p)?,
            None => FileSettings::default(),
        };
        let lake_is_default = o.lake.is_none() && file.lake.is_none();
        let file_limits = file.limits();
        let (users, access) = split_users(file.users.clone().unwrap_or_default())?;
        let lake = o.lake.or(file.lake).unwrap_or_else(|| DEFAULT_LAKE.into());
        let s = Settings {
            audit: AuditSettings::resolve(file.audit, &lake)?,
            lake,
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
            users,
            access,
            roles: file.roles.clone().unwrap_or_default(),
            require_tls: o.require_tls.or(file.require_tls),
            limits: Limits::resolve(o.limits.or(file_limits))?,
        };
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&s.max_connections) {
            return Err(Error::config(format!("max_connections must be from 1 to {MAX_CONNECTIONS_LIMIT}, not {}", s.max_connections))
                .with_hint("e.g. max_connections: 200 (PostgreSQL's own limit is the same)"));
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

    /// Whether clients must use TLS: as configured, else when the server listens beyond
    /// loopback with users (passwords would otherwise cross the network in SCRAM exchanges
    /// open to offline guessing, and the session after them in the clear).
    pub fn require_tls(&self, addr: &SocketAddr) -> bool {
        self.require_tls.unwrap_or(!addr.ip().is_loopback() && !self.users.is_empty())
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
