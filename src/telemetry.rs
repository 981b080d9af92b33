//! Logging: tracing to stderr, filtered by the `log` setting (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(format!("lakecube={level},warn")).ok())
        .unwrap_or_else(|| EnvFilter::new("lakecube=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// What a running server records of its failed statements: the most recent ones, kept for
/// inspection (the client tests check them).
#[derive(Debug, Default)]
pub struct RecentFailures {
    recent: std::sync::Mutex<std::collections::VecDeque<Failure>>,
}

/// One failed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub sql: String,
}

impl RecentFailures {
    /// How many recent failures are kept.
    const KEPT: usize = 32;

    pub fn record_failure(&self, failure: Failure) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == Self::KEPT {
            recent.pop_front();
        }
        recent.push_back(failure);
    }

    /// The latest failures, oldest first.
    pub fn recent_failures(&self) -> Vec<Failure> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}
