//! What a run reports: its [`Summary`] with a [`FileReport`] per file (returned, and written
//! as JSON), the rejects file (CSV, written as rejects come), and the progress of each file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

/// One rejected row.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub raw: String,
    pub reason: String,
}

/// How one file was read.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub sha256: String,
    /// Already committed by an earlier run (same content): skipped.
    pub already_ingested: bool,
    /// Same content as this earlier file of the batch: counted once, with that file.
    pub duplicate_of: Option<String>,
    pub format: String,
    pub bytes: u64,
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    /// Target field → the header it was read from.
    pub mapping: BTreeMap<String, String>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// The first parsed rows, as `field=value` (for `--dry-run`).
    pub sample: Vec<String>,
}

/// The run summary, also written as JSON next to the rejects.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub source: String,
    pub kind: &'static str,
    pub dry_run: bool,
    pub files: Vec<FileReport>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Store-department-hours the batch adds to or creates in `traffic`.
    pub store_hours: u64,
    /// Stores and departments added or updated (a `stores` or `departments` source, or
    /// `create_missing`).
    pub members_changed: u64,
    /// The Delta version of `traffic` the batch was committed as.
    pub committed_version: Option<i64>,
    pub duration_ms: u128,
    pub rejects_file: Option<String>,
}

/// The rejects file, written as rejects come (never held in memory) and only if there are any.
pub(super) struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
}

impl Rejects {
    pub(super) fn new(path: PathBuf) -> Rejects {
        Rejects { path, writer: None }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::config(format!("cannot write {}: {e}", self.path.display()))
    }

    pub(super) fn push(&mut self, r: &Reject) -> Result<()> {
        if self.writer.is_none() {
            self.writer = Some(csv::Writer::from_path(&self.path).map_err(|e| self.error(e))?);
        }
        let w = self.writer.as_mut().expect("opened above");
        w.serialize(r).map_err(|e| self.error(e))
    }

    /// Flushes; the file's path if any reject was written.
    pub(super) fn finish(&mut self) -> Result<Option<String>> {
        match self.writer.as_mut() {
            None => Ok(None),
            Some(w) => {
                w.flush().map_err(|e| self.error(e))?;
                Ok(Some(self.path.display().to_string()))
            }
        }
    }
}

/// Progress of one file: a bar on a terminal, else a log line every 10 s.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    file: String,
    started: std::time::Instant,
    logged: std::time::Instant,
}

impl Progress {
    pub(super) fn new(file: &str, wanted: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {human_pos} rows ({per_sec})").expect("a valid template"));
            b.set_message(file.to_string());
            b
        });
        let now = std::time::Instant::now();
        Progress { bar, file: file.to_string(), started: now, logged: now }
    }

    pub(super) fn tick(&mut self, rows: u64) {
        if rows % 16384 != 0 {
            return;
        }
        if let Some(b) = &self.bar {
            b.set_position(rows);
        } else if self.logged.elapsed() >= std::time::Duration::from_secs(10) {
            self.logged = std::time::Instant::now();
            let rate = rows as f64 / self.started.elapsed().as_secs_f64();
            tracing::info!(file = %self.file, rows, rows_per_s = rate as u64, "reading");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
