//! `--watch`: a source's drop folder polled, each settled file ingested as a run of its own,
//! transient failures retried with a growing wait.

use std::collections::HashMap;
use std::path::PathBuf;

use super::report::Summary;
use super::run::{Options, input_files, run};
use super::source::Source;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Lake;

/// A file as last seen by the watcher: its size and modification time.
type Seen = (u64, Option<std::time::SystemTime>);

/// Whether an ingest that failed with this error may succeed if tried again unchanged: the
/// lake or a local file could not be read or written (an object store's error, a Delta commit
/// that conflicted with another writer's). Too many rejects, a refused or unreadable file, a
/// bad mapping are permanent: the file must change first.
pub fn is_transient(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Lake | ErrorKind::Io | ErrorKind::ResourceExhausted)
}

/// The longest wait before a transient failure is tried again.
pub const MAX_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(300);

/// The wait before the `attempt`-th retry (1, 2, …) of a file: the poll interval, doubled at
/// each failure, at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(interval: std::time::Duration, attempt: u32) -> std::time::Duration {
    interval.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(MAX_RETRY_DELAY)
}

/// A file whose last attempt failed transiently: as it was seen, the failures so far, and when
/// it may be tried again.
struct Retry {
    seen: Seen,
    attempts: u32,
    at: tokio::time::Instant,
}

/// Checks that `source` can be watched: it names its files by `input.path` (the one rule of `ingest
/// --watch` and `serve --ingest-watch`, which checks its sources before the server starts).
pub fn check_watchable(source: &Source) -> Result<()> {
    if source.input.path.is_none() {
        return Err(Error::config(format!("source `{}`: --watch and --ingest-watch need `input: {{path: …}}` (a folder glob) in the definition", source.name))
            .with_hint("e.g. input: {path: incoming/sensors/*.csv}"));
    }
    Ok(())
}

/// `--watch`: polls the source's `input.path` every `interval` and ingests, as one batch (one
/// commit) per file, each file that is new or changed and has been *settled* for a whole interval (same
/// size and modification time at two polls in a row, so a file still being written — by an
/// FTP upload, a copy — is left until it is complete). A file is ingested once: its content
/// hash is recorded in the commit, so a file seen again (renamed, touched, or after a restart)
/// is skipped. A file that fails permanently (too many rejects, unreadable, refused as grown:
/// [`is_transient`]) is logged and not retried until it changes; one that fails transiently
/// (the lake's store, a commit conflict) is retried at later polls, waiting [`retry_delay`]
/// between attempts. Returns when `shutdown` completes, after the batch in hand.
pub async fn watch(
    lake: &Lake,
    source: &Source,
    opts: &Options,
    interval: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_batch: impl FnMut(&Result<Summary>),
) -> Result<()> {
    check_watchable(source)?;
    tokio::pin!(shutdown);
    let mut last: HashMap<PathBuf, Seen> = HashMap::new();
    let mut done: HashMap<PathBuf, Seen> = HashMap::new();
    let mut retries: HashMap<PathBuf, Retry> = HashMap::new();
    loop {
        let mut settled = Vec::new();
        let mut now: HashMap<PathBuf, Seen> = HashMap::new();
        for path in input_files(source)? {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let seen = (meta.len(), meta.modified().ok());
            // A changed file starts afresh.
            if retries.get(&path).is_some_and(|r| r.seen != seen) {
                retries.remove(&path);
            }
            let waiting = retries.get(&path).is_some_and(|r| r.at > tokio::time::Instant::now());
            if last.get(&path) == Some(&seen) && done.get(&path) != Some(&seen) && seen.0 > 0 && !waiting {
                settled.push(path.clone());
            }
            now.insert(path, seen);
        }
        last = now;
        // One batch (one commit) per file, so that a bad file never holds back good ones.
        for path in settled {
            let batch_opts = Options { files: vec![path.clone()], ..opts.clone() };
            let outcome = run(lake, source, &batch_opts).await;
            let Some(seen) = last.get(&path).copied() else { continue };
            match &outcome {
                Ok(s) => {
                    tracing::info!(source = %source.name, file = %path.display(), rows = s.rows_accepted, version = ?s.committed_version, "file ingested");
                    retries.remove(&path);
                    done.insert(path, seen);
                }
                Err(e) if is_transient(e) => {
                    let attempts = retries.get(&path).map_or(0, |r| r.attempts) + 1;
                    let delay = retry_delay(interval, attempts);
                    tracing::warn!(source = %source.name, file = %path.display(), error = %e.message, attempts, retry_in = ?delay, "file failed; it is tried again");
                    retries.insert(path, Retry { seen, attempts, at: tokio::time::Instant::now() + delay });
                }
                Err(e) => {
                    tracing::warn!(source = %source.name, file = %path.display(), error = %e.message, hint = e.hint.as_deref().unwrap_or(""), "file failed; it waits until it changes");
                    retries.remove(&path);
                    done.insert(path, seen);
                }
            }
            on_batch(&outcome);
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        let s = std::time::Duration::from_secs;
        let delays: Vec<_> = (1..=6).map(|a| retry_delay(s(5), a)).collect();
        assert_eq!(delays, [s(5), s(10), s(20), s(40), s(80), s(160)]);
        assert_eq!(retry_delay(s(5), 7), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(s(5), u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn store_and_commit_errors_are_transient_bad_files_are_not() {
        assert!(is_transient(&Error::lake("lake table error: Transaction failed: concurrent transaction")));
        assert!(is_transient(&Error::from(std::io::Error::other("connection reset"))));
        assert!(!is_transient(&Error::new(ErrorKind::DataException, "3 of 7 rows rejected")));
        assert!(!is_transient(&Error::config("no column for `zone_code`")));
    }
}
