//! Session settings as PostgreSQL clients see them: `SET`, `SHOW`, `RESET`,
//! `current_setting()`, `set_config()` and `pg_settings` all read the one table here.
//!
//! lakecube is read-only and has one time zone (UTC) and one encoding (UTF8), so most settings
//! only need to be remembered and echoed back: drivers send them at connect and some read them
//! back (`SHOW transaction_isolation`, `current_setting('server_version_num')`). The few that
//! change lakecube's behaviour say so in their description.

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind};

/// The version reported to clients: drivers parse it to choose their SQL.
pub const SERVER_VERSION: &str = "15.8";
/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "150008";

/// The settings PostgreSQL reports to the client in ParameterStatus: all of them after
/// authentication, each again when a statement changes it (PostgreSQL's GUC_REPORT).
pub const REPORTED: &[&str] = &[
    "application_name", "client_encoding", "DateStyle", "IntervalStyle", "is_superuser", "server_encoding",
    "server_version", "session_authorization", "standard_conforming_strings", "TimeZone", "integer_datetimes",
    "in_hot_standby",
];

/// A setting's default, by its canonical name.
pub fn default_of(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| *v)
}

/// Every setting lakecube knows: (name, default, short description).
pub const DEFAULTS: &[(&str, &str, &str)] = &[
    ("application_name", "", "Sets the application name to be reported in statistics and logs."),
    ("bytea_output", "hex", "Sets the output format for bytea."),
    ("client_encoding", "UTF8", "Sets the client's character set encoding (lakecube speaks UTF8 only)."),
    ("client_min_messages", "notice", "Sets the message levels that are sent to the client."),
    ("DateStyle", "ISO, MDY", "Sets the display format for date and time values."),
    ("default_transaction_isolation", "read committed", "Sets the transaction isolation level of each new transaction."),
    ("default_transaction_read_only", "on", "Sets the default read-only status of new transactions (lakecube is read-only)."),
    ("extra_float_digits", "1", "Sets the number of digits displayed for floating-point values."),
    ("idle_in_transaction_session_timeout", "0", "Sets the maximum allowed idle time between queries, when in a transaction (the server then closes the connection)."),
    ("idle_session_timeout", "0", "Sets the maximum allowed idle time between queries, when not in a transaction (the server then closes the connection)."),
    ("in_hot_standby", "off", "Shows whether hot standby is currently active."),
    ("integer_datetimes", "on", "Shows whether datetimes are integer based."),
    ("IntervalStyle", "postgres", "Sets the display format for interval values."),
    ("is_superuser", "off", "Shows whether the current user is a superuser."),
    ("jit", "off", "Allow JIT compilation."),
    ("lakecube.rollups", "on", "Answers cube queries from rollups where one covers them; off: always from the lake (for comparisons)."),
    ("lakecube.answer_reuse", "on", "Sends the kept rows of a statement answered from rollups again while the lake and its rollups have not moved; off: runs it every time (for comparisons)."),
    ("lc_collate", "C", "Shows the collation order locale."),
    ("lc_ctype", "C", "Shows the character classification and case conversion locale."),
    ("lc_messages", "C", "Sets the language in which messages are displayed."),
    ("lc_monetary", "C", "Sets the locale for formatting monetary amounts."),
    ("lc_numeric", "C", "Sets the locale for formatting numbers."),
    ("lc_time", "C", "Sets the locale for formatting date and time values."),
    ("lock_timeout", "0", "Sets the maximum allowed duration of any wait for a lock."),
    ("max_identifier_length", "63", "Shows the maximum identifier length."),
    ("max_index_keys", "32", "Shows the maximum number of index keys."),
    ("search_path", "\"$user\", public", "Sets the schema search order for names that are not schema-qualified."),
    ("server_encoding", "UTF8", "Shows the server (database) character set encoding."),
    ("server_version", SERVER_VERSION, "Shows the server version."),
    ("role", "none", "Sets the current role (SET ROLE: one of the roles granted to the user, which then reads what that role alone gives)."),
    ("server_version_num", SERVER_VERSION_NUM, "Shows the server version as an integer."),
    ("session_authorization", "", "Sets the session user name."),
    ("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally."),
    ("statement_timeout", "0", "Sets the maximum allowed duration of any statement (0 turns this off)."),
    ("TimeZone", "UTC", "Sets the time zone for displaying and interpreting time stamps (lakecube works in UTC)."),
    ("transaction_isolation", "read committed", "Sets the current transaction's isolation level."),
    ("transaction_read_only", "on", "Sets the current transaction's read-only status (lakecube is read-only)."),
    ("xmloption", "content", "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments."),
];

/// The canonical spelling of a setting name (PostgreSQL matches names case-insensitively),
/// or `None` for a name lakecube does not know.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let lower = match lower.as_str() {
        // Aliases PostgreSQL accepts.
        "time zone" | "time_zone" => "timezone",
        "transaction isolation level" => "transaction_isolation",
        "session authorization" => "session_authorization",
        other => other,
    }
    .to_string();
    DEFAULTS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(&lower)).map(|(n, _, _)| *n)
}

/// One session's settings: the defaults, overlaid with the server's configured defaults,
/// overlaid with what the session set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Values set by the client (startup parameters or `SET`), by canonical name; custom
    /// (dotted) names keep their lower-case spelling.
    set: BTreeMap<String, String>,
    /// The server's defaults (config: `statement_timeout`, …), what `RESET` returns to.
    server: std::sync::Arc<BTreeMap<String, String>>,
    /// Who the session is, which `role` and `session_authorization` are checked against;
    /// `None` lets any value through (no users configured: no roles to check).
    identity: Option<std::sync::Arc<Identity>>,
}

/// Who a session is, for the two settings that name a role: `role` may be set to a role
/// granted to the user (or back to `none`), `session_authorization` only to the user itself
/// (lakecube has no superuser to become someone else).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    /// The roles granted to the user.
    pub granted: Vec<String>,
    /// Every role and user there is (for PostgreSQL's two errors: a role that does not
    /// exist, and one that is not the user's).
    pub known: Vec<String>,
}

impl Identity {
    /// The role named `value` as the user may take it: `Ok(None)` for `none` or the user
    /// themselves (all their roles), `Ok(Some(role))` for a granted one.
    pub fn role(&self, value: &str) -> Result<Option<String>, SetError> {
        let v = value.trim().trim_matches('\'');
        if v.eq_ignore_ascii_case("none") || v == self.user {
            return Ok(None);
        }
        if let Some(r) = self.granted.iter().find(|r| *r == v) {
            return Ok(Some(r.clone()));
        }
        if self.known.iter().any(|r| r == v) {
            Err(SetError::Denied { message: format!("permission denied to set role \"{v}\""), hint: format!("roles granted to {}: {}", self.user, if self.granted.is_empty() { "none".to_string() } else { self.granted.join(", ") }) })
        } else {
            Err(SetError::NoSuchRole(v.to_string()))
        }
    }
}

/// A setting name the session may not change, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum SetError {
    /// A DataFusion runtime knob: clients may not retune the shared engine.
    EngineKnob(String),
    /// Neither a PostgreSQL setting lakecube knows nor a custom (dotted) one.
    Unknown(String),
    /// A value lakecube cannot honour (e.g. a client encoding other than UTF8).
    BadValue { name: String, value: String, hint: String },
    /// A role the user may not take (`SET ROLE`, `SET SESSION AUTHORIZATION`).
    Denied { message: String, hint: String },
    /// A role that does not exist.
    NoSuchRole(String),
}

impl Settings {
    /// Settings whose defaults are the server's `defaults` (by canonical name) where given.
    pub fn with_server_defaults(defaults: std::sync::Arc<BTreeMap<String, String>>) -> Settings {
        Settings { set: BTreeMap::new(), server: defaults, identity: None }
    }

    /// From now on `role` and `session_authorization` are checked against `identity`.
    pub fn with_identity(mut self, identity: Option<std::sync::Arc<Identity>>) -> Settings {
        self.identity = identity;
        self
    }

    /// Who the session is, as [`Settings::with_identity`] gave it.
    pub fn identity(&self) -> Option<std::sync::Arc<Identity>> {
        self.identity.clone()
    }

    /// The role taken with `SET ROLE`, `None` when the user acts with all their roles.
    pub fn role(&self) -> Option<String> {
        self.get("role").filter(|r| r != "none")
    }

    /// The server's defaults these settings were made with.
    pub fn server_defaults(&self) -> std::sync::Arc<BTreeMap<String, String>> {
        self.server.clone()
    }

    /// The current value of a setting, or `None` if unknown.
    pub fn get(&self, name: &str) -> Option<String> {
        let key = key_of(name)?;
        if let Some(v) = self.set.get(&key).or_else(|| self.server.get(&key)) {
            return Some(v.clone());
        }
        if key == "session_authorization" && let Some(identity) = &self.identity {
            return Some(identity.user.clone());
        }
        default_of(&key).map(str::to_string)
    }

    /// Sets a value for the session.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SetError> {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("datafusion.") {
            return Err(SetError::EngineKnob(name.to_string()));
        }
        let key = key_of(name).ok_or_else(|| SetError::Unknown(name.to_string()))?;
        let value = match key.as_str() {
            "client_encoding" => {
                let v = value.trim_matches(|c| c == '\'' || c == '"');
                let norm = v.to_ascii_uppercase().replace(['-', '_'], "");
                if norm != "UTF8" && norm != "UNICODE" {
                    return Err(SetError::BadValue {
                        name: key,
                        value: value.to_string(),
                        hint: "lakecube sends and receives UTF8 only".into(),
                    });
                }
                "UTF8".to_string()
            }
            "lakecube.rollups" | "lakecube.answer_reuse" => match value.trim_matches('\'').to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => "on".to_string(),
                "off" | "false" | "no" | "0" => "off".to_string(),
                _ => {
                    return Err(SetError::BadValue {
                        hint: format!("{key} is on or off"),
                        name: key,
                        value: value.to_string(),
                    });
                }
            },
            "TimeZone" => match value.to_ascii_uppercase().as_str() {
                "UTC" | "ETC/UTC" | "GMT" | "ETC/GMT" | "Z" | "ZULU" | "UCT" | "UNIVERSAL" | "DEFAULT" | "LOCAL" => {
                    "UTC".to_string()
                }
                // Other zones are remembered and echoed; lakecube's timestamps carry no zone.
                _ => value.to_string(),
            },
            "role" => match &self.identity {
                Some(identity) => identity.role(value)?.unwrap_or_else(|| "none".to_string()),
                None => value.trim().trim_matches('\'').to_string(),
            },
            "session_authorization" => match &self.identity {
                Some(identity) if value.trim().trim_matches('\'') != identity.user && !value.eq_ignore_ascii_case("default") => {
                    return Err(SetError::Denied {
                        message: "permission denied to set session authorization".into(),
                        hint: format!("lakecube has no superuser: a session stays {}'s; SET ROLE takes one of their roles", identity.user),
                    });
                }
                Some(identity) => identity.user.clone(),
                None => value.to_string(),
            },
            _ => value.to_string(),
        };
        self.set.insert(key, value);
        Ok(())
    }

    /// Back to the default (`RESET name`).
    pub fn reset(&mut self, name: &str) -> Result<(), SetError> {
        if name.to_ascii_lowercase().starts_with("datafusion.") {
            return Err(SetError::EngineKnob(name.to_string()));
        }
        let key = key_of(name).ok_or_else(|| SetError::Unknown(name.to_string()))?;
        self.set.remove(&key);
        Ok(())
    }

    /// Every known setting with its current value, in name order (`SHOW ALL`).
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = DEFAULTS
            .iter()
            .map(|(n, _, d)| (n.to_string(), self.get(n).unwrap_or_default(), d.to_string()))
            .collect();
        for (k, v) in &self.set {
            if !DEFAULTS.iter().any(|(n, _, _)| n == k) {
                out.push((k.clone(), v.clone(), String::new()));
            }
        }
        out.sort_by_key(|(n, _, _)| n.to_ascii_lowercase());
        out
    }

    /// The statement timeout in milliseconds (0 = none). PostgreSQL reads a bare number as
    /// milliseconds and accepts the units us, ms, s, min, h, d.
    pub fn statement_timeout_ms(&self) -> u64 {
        self.duration_ms("statement_timeout")
    }

    /// A duration setting in milliseconds (0 = off, also for a value that does not parse).
    pub fn duration_ms(&self, name: &str) -> u64 {
        self.get(name).and_then(|v| parse_duration_ms(&v)).unwrap_or(0)
    }
}

/// The map key of a setting: its canonical name, or the lower-cased name for a custom
/// (`prefix.name`) setting; `None` for a name PostgreSQL would reject.
fn key_of(name: &str) -> Option<String> {
    if let Some(n) = canonical_name(name) {
        return Some(n.to_string());
    }
    let lower = name.to_ascii_lowercase();
    (lower.contains('.') && !lower.starts_with('.') && !lower.ends_with('.')).then_some(lower)
}

/// Parses a PostgreSQL duration setting ("500", "500ms", "2s", "1min") into milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'').trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some((n * factor).round() as u64)
}

/// What a statement may read of its session.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub user: String,
    pub settings: Settings,
}

/// The error for a setting the session may not change.
impl From<SetError> for Error {
    fn from(e: SetError) -> Error {
    match e {
        SetError::EngineKnob(name) => Error::new(
            ErrorKind::InsufficientPrivilege,
            format!("permission denied to set parameter \"{name}\""),
        )
        .with_hint("DataFusion's runtime settings are fixed by the server's configuration, not by clients"),
        SetError::Unknown(name) => {
            let known: Vec<&str> = DEFAULTS.iter().map(|(n, _, _)| *n).collect();
            let mut err =
                Error::new(ErrorKind::UndefinedObject, format!("unrecognized configuration parameter \"{name}\""));
            if let Some(c) = crate::error::closest(&name, &known) {
                err = err.with_hint(crate::error::did_you_mean_hint(c));
            }
            err
        }
        SetError::BadValue { name, value, hint } => {
            Error::new(ErrorKind::InvalidParameterValue, format!("invalid value for parameter \"{name}\": {value}"))
                .with_hint(hint)
        }
        SetError::Denied { message, hint } => Error::new(ErrorKind::InsufficientPrivilege, message).with_hint(hint),
        SetError::NoSuchRole(name) => Error::new(ErrorKind::InvalidParameterValue, format!("role \"{name}\" does not exist")),
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_session_authorization_are_checked_against_the_identity() {
        let identity = Identity { user: "marc".into(), granted: vec!["manager".into()], known: vec!["boss".into(), "manager".into(), "marc".into(), "partner".into()] };
        let mut s = Settings::default().with_identity(Some(std::sync::Arc::new(identity)));
        assert_eq!(s.role(), None);
        s.set("role", "manager").unwrap();
        assert_eq!(s.role().as_deref(), Some("manager"));
        assert!(matches!(s.set("role", "partner"), Err(SetError::Denied { .. })));
        assert_eq!(s.set("role", "nobody"), Err(SetError::NoSuchRole("nobody".into())));
        assert_eq!(s.role().as_deref(), Some("manager"), "a refused SET ROLE changes nothing");
        s.set("role", "marc").unwrap();
        assert_eq!((s.role(), s.get("role").as_deref()), (None, Some("none")));
        assert!(matches!(s.set("session_authorization", "boss"), Err(SetError::Denied { .. })));
        s.set("session_authorization", "marc").unwrap();
        s.reset("session_authorization").unwrap();
        assert_eq!(s.get("session_authorization").as_deref(), Some("marc"));
        // Without users (no identity) any value is remembered, as before.
        let mut open = Settings::default();
        open.set("role", "whoever").unwrap();
        assert_eq!(open.role().as_deref(), Some("whoever"));
    }

    #[test]
    fn names_are_case_insensitive_and_custom_names_need_a_dot() {
        let mut s = Settings::default();
        assert_eq!(s.get("datestyle").as_deref(), Some("ISO, MDY"));
        s.set("EXTRA_FLOAT_DIGITS", "3").unwrap();
        assert_eq!(s.get("extra_float_digits").as_deref(), Some("3"));
        assert_eq!(s.set("no_such_thing", "1"), Err(SetError::Unknown("no_such_thing".into())));
        s.set("myapp.tenant", "x").unwrap();
        assert_eq!(s.get("MyApp.Tenant").as_deref(), Some("x"));
        assert!(matches!(s.set("datafusion.execution.batch_size", "1"), Err(SetError::EngineKnob(_))));
        assert!(matches!(s.set("client_encoding", "LATIN1"), Err(SetError::BadValue { .. })));
        s.set("client_encoding", "'utf-8'").unwrap();
        assert_eq!(s.get("client_encoding").as_deref(), Some("UTF8"));
        s.reset("extra_float_digits").unwrap();
        assert_eq!(s.get("extra_float_digits").as_deref(), Some("1"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1500"), Some(1500));
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("'1min'"), Some(60_000));
        assert_eq!(parse_duration_ms("soon"), None);
    }
}
