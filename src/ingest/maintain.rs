//! `lakecube maintain`: keeps the lake's tables healthy over months of ingest. Each MERGE
//! rewrites the files it touches, so small files and files no longer in the table (tombstones)
//! pile up. For each table, under the ingest lock (a maintenance commit never races an ingest):
//! - **compact** (Delta OPTIMIZE): small files rewritten into files of about `target_size`,
//!   in one commit that readers see atomically (the rows are the same, only their files);
//! - **vacuum** (Delta VACUUM, lite mode): files removed from the table longer ago than the
//!   retention period are deleted. A reader of any version within the retention still finds
//!   every file it needs; the retention may not be shorter than the table's
//!   `delta.deletedFileRetentionDuration` (7 days unless set), as delta-rs enforces.

use std::num::NonZeroU64;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::{Lake, schema};

/// What `maintain` does.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Rewrite small files into files of about this many bytes.
    pub target_size: u64,
    /// Delete files removed from a table longer ago than this (None: the table's own).
    pub retention: Option<chrono::Duration>,
    /// Say what would be vacuumed, change nothing (compaction is skipped).
    pub dry_run: bool,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions { target_size: 128 << 20, retention: None, dry_run: false }
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableMaintenance {
    pub table: String,
    pub files_compacted: u64,
    pub files_written: u64,
    pub files_vacuumed: usize,
    pub version: i64,
}

/// Compacts and vacuums every table of the lake, holding the ingest lock.
pub async fn maintain(lake: &Lake, opts: &MaintainOptions) -> Result<Vec<TableMaintenance>> {
    let lock = super::lock::acquire(lake, "maintain").await?;
    let out = maintain_locked(lake, opts, &lock).await;
    lock.release().await;
    out
}

async fn maintain_locked(lake: &Lake, opts: &MaintainOptions, lock: &super::lock::IngestLock) -> Result<Vec<TableMaintenance>> {
    let target = NonZeroU64::new(opts.target_size.max(1 << 20)).expect("at least 1 MiB");
    let mut out = Vec::new();
    for name in schema::ALL_TABLES {
        let Some(table) = lake.open_table(name).await? else { continue };
        let (table, compacted, written) = if opts.dry_run {
            (table, 0, 0)
        } else {
            lock.check()?;
            let mut optimize = table.optimize().with_target_size(target);
            if let Some(p) = lake.writer_properties() {
                optimize = optimize.with_writer_properties(p);
            }
            if let Some(session) = lake.read_session() {
                optimize = optimize.with_session_state(session);
            }
            let (table, m) = optimize.await.map_err(Error::from)?;
            (table, m.num_files_removed, m.num_files_added)
        };
        let mut vacuum = table.vacuum().with_dry_run(opts.dry_run);
        if let Some(r) = opts.retention {
            vacuum = vacuum.with_retention_period(r);
        }
        if !opts.dry_run {
            lock.check()?;
        }
        let (table, v) = vacuum.await.map_err(|e| {
            Error::lake(format!("vacuum of {name}: {e}"))
                .with_hint("the retention may not be shorter than the table's delta.deletedFileRetentionDuration (7 days by default)")
        })?;
        let version = table.version().map_or(-1, |v| v as i64);
        tracing::info!(table = name, compacted, written, vacuumed = v.files_deleted.len(), version, dry_run = opts.dry_run, "table maintained");
        out.push(TableMaintenance {
            table: name.to_string(),
            files_compacted: compacted,
            files_written: written,
            files_vacuumed: v.files_deleted.len(),
            version,
        });
    }
    Ok(out)
}
