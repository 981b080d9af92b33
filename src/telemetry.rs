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

/// What a running server counts: statements answered and statements that failed, with the
/// most recent failures kept for inspection (tests check them; a metrics endpoint will export
/// the counts).
#[derive(Debug, Default)]
pub struct Metrics {
    failed: std::sync::atomic::AtomicU64,
    recent: std::sync::Mutex<std::collections::VecDeque<Failure>>,
}

/// One failed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub sql: String,
}

impl Metrics {
    /// How many recent failures are kept.
    const KEPT: usize = 32;

    pub fn record_failure(&self, failure: Failure) {
        self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == Self::KEPT {
            recent.pop_front();
        }
        recent.push_back(failure);
    }

    /// Statements that failed since the server started.
    pub fn failed(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The latest failures, oldest first.
    pub fn recent_failures(&self) -> Vec<Failure> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}
