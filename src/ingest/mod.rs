//! `lakecube ingest`: raw exports into the lake, by a YAML source definition, exactly once
//! and atomically.
//!
//! A run reads each file of a source ([`read`]: encoding and delimiter detected), maps its
//! headers to the kind's fields ([`fields`]: built-in English and French aliases plus the
//! source's), validates and parses every row (bad rows become rejects with file, line, raw text
//! and reason), resolves store and department codes against the lake's reference tables
//! (unknown codes are rejects), and aggregates to the lake's grain: one row per store,
//! department and hour. The whole batch is then merged into `traffic` in **one Delta commit**
//! ([`commit`]): a store-hour already in the lake gets the new counts added, a new one is
//! inserted. The commit carries one Delta application transaction per file, keyed by the
//! file's SHA-256, so a file already ingested is skipped and a batch retried after a crash is
//! committed once.

pub mod commit;
pub mod fields;
pub mod read;
pub mod source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{NaiveDateTime, Timelike};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::Digest;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Lake;
use fields::{Value, fields_of, parse_value};
use source::{Kind, Source};

/// What to ingest and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files to read; when empty, the source's `input.path` (a file or a glob).
    pub files: Vec<PathBuf>,
    /// Read, validate and report, but write nothing to the lake.
    pub dry_run: bool,
    /// Overrides the source's `max_reject_share`.
    pub max_reject_share: Option<f64>,
    /// Where the run summary (JSON) and the rejects (CSV) are written.
    pub report_dir: PathBuf,
}

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
    /// The Delta version of `traffic` the batch was committed as.
    pub committed_version: Option<i64>,
    pub duration_ms: u128,
    pub rejects_file: Option<String>,
}

/// Hourly totals of one store, department and hour.
#[derive(Debug, Default, Clone)]
pub struct HourTotals {
    pub footfall: i64,
    pub tickets: HashSet<String>,
    pub revenue: Decimal,
    pub units: i64,
}

/// The batch to commit: hourly totals by (store_id, department_id, hour).
pub type Batch = BTreeMap<(i32, i32, NaiveDateTime), HourTotals>;

/// The Delta application-transaction id that marks a file of a source as ingested.
pub fn app_id(source: &str, sha256: &str) -> String {
    format!("lakecube-ingest/{source}/{sha256}")
}

/// Runs one ingest of `source` into `lake`.
pub async fn run(lake: &Lake, source: &Source, opts: &Options) -> Result<Summary> {
    let started = std::time::Instant::now();
    let files = if opts.files.is_empty() { input_files(source)? } else { opts.files.clone() };
    if files.is_empty() {
        return Err(Error::config(format!("source `{}`: no file to ingest", source.name))
            .with_hint("pass --file PATH, or set `input: {path: …}` in the source definition"));
    }
    let codes = commit::ReferenceCodes::load(lake).await?;
    let traffic = lake
        .open_table(crate::storage::schema::TRAFFIC)
        .await?
        .ok_or_else(|| Error::lake("the lake has no traffic table").with_hint("generate or create the lake first (lakecube generate)"))?;
    let mut batch = Batch::new();
    let mut reports = Vec::new();
    let mut rejects = Vec::new();
    let mut new_files = Vec::new();
    for path in &files {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::config(format!("cannot read {shown}: {e}")))?;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        let already = commit::already_ingested(&traffic, &app_id(&source.name, &sha)).await?;
        let mut report = FileReport {
            path: shown.clone(),
            sha256: sha.clone(),
            already_ingested: already,
            encoding: None,
            delimiter: None,
            mapping: BTreeMap::new(),
            rows_read: 0,
            rows_accepted: 0,
            rows_rejected: 0,
            sample: Vec::new(),
        };
        if already {
            tracing::info!(file = %shown, "already ingested (same content): skipped");
            reports.push(report);
            continue;
        }
        read_file(source, &bytes, &shown, &codes, &mut batch, &mut rejects, &mut report)?;
        new_files.push(sha);
        reports.push(report);
    }
    let rows_read: u64 = reports.iter().map(|r| r.rows_read).sum();
    let rows_rejected: u64 = reports.iter().map(|r| r.rows_rejected).sum();
    let mut summary = Summary {
        source: source.name.clone(),
        kind: source.kind.name(),
        dry_run: opts.dry_run,
        files: reports,
        rows_read,
        rows_accepted: rows_read - rows_rejected,
        rows_rejected,
        store_hours: batch.len() as u64,
        committed_version: None,
        duration_ms: 0,
        rejects_file: None,
    };
    std::fs::create_dir_all(&opts.report_dir)
        .map_err(|e| Error::config(format!("cannot create the report folder {}: {e}", opts.report_dir.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    if !rejects.is_empty() {
        let path = opts.report_dir.join(format!("{}-{stamp}-rejects.csv", source.name));
        write_rejects(&path, &rejects)?;
        summary.rejects_file = Some(path.display().to_string());
    }
    let allowed = opts.max_reject_share.unwrap_or(source.max_reject_share);
    let share = if rows_read == 0 { 0.0 } else { rows_rejected as f64 / rows_read as f64 };
    let outcome = if share > allowed {
        Err(Error::new(
            ErrorKind::DataException,
            format!("{rows_rejected} of {rows_read} rows rejected ({:.2} %), more than the {:.2} % allowed: nothing was written", share * 100.0, allowed * 100.0),
        )
        .with_hint(format!(
            "see the rejects in {}; fix the export or the source's mapping, or allow more with --max-reject-share",
            summary.rejects_file.as_deref().unwrap_or("the rejects file")
        )))
    } else if opts.dry_run || batch.is_empty() {
        Ok(())
    } else {
        let ids: Vec<String> = new_files.iter().map(|sha| app_id(&source.name, sha)).collect();
        summary.committed_version = Some(commit::merge_into_traffic(traffic, &batch, &ids).await?);
        Ok(())
    };
    summary.duration_ms = started.elapsed().as_millis();
    let path = opts.report_dir.join(format!("{}-{stamp}-summary.json", source.name));
    std::fs::write(&path, serde_json::to_string_pretty(&summary).expect("summary serializes"))
        .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    outcome.map(|_| summary)
}

/// The files of the source's `input.path`: one file, or a glob's matches in name order.
fn input_files(source: &Source) -> Result<Vec<PathBuf>> {
    let Some(pattern) = &source.input.path else { return Ok(vec![]) };
    let paths = glob::glob(pattern).map_err(|e| Error::config(format!("source `{}`: input.path `{pattern}`: {e}", source.name)))?;
    let mut out: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| p.is_file()).collect();
    out.sort();
    Ok(out)
}

/// Reads one file's rows into the batch and the rejects.
fn read_file(
    source: &Source,
    bytes: &[u8],
    file: &str,
    codes: &commit::ReferenceCodes,
    batch: &mut Batch,
    rejects: &mut Vec<Reject>,
    report: &mut FileReport,
) -> Result<()> {
    let decoded = read::decode(bytes, &source.csv, file)?;
    report.encoding = Some(decoded.encoding.to_string());
    let json = match source.format {
        source::Format::Json | source::Format::Ndjson => true,
        source::Format::Csv => false,
        source::Format::Auto => {
            let lower = file.to_lowercase();
            lower.ends_with(".json") || lower.ends_with(".ndjson") || lower.ends_with(".jsonl")
        }
    };
    let (headers, records) = if json {
        read::json_records(&decoded.text)
    } else {
        report.delimiter = Some(match decoded.delimiter {
            b'\t' => "\\t".to_string(),
            d => (d as char).to_string(),
        });
        read::records(&decoded)
    };
    let specs = fields_of(source.kind);
    let map = fields::map_headers(source.kind, &headers, &source.mapping, file)?;
    for (spec, col) in specs.iter().zip(&map.columns) {
        if let Some(c) = col {
            report.mapping.insert(spec.name.to_string(), headers[*c].clone());
        }
    }
    let delimiter = decoded.delimiter as char;
    for record in records {
        report.rows_read += 1;
        let record = match record {
            Ok(r) => r,
            Err((line, reason)) => {
                rejects.push(Reject { file: file.into(), line, raw: String::new(), reason });
                report.rows_rejected += 1;
                continue;
            }
        };
        let raw = || if json { record.fields.join(" | ") } else { record.fields.join(&delimiter.to_string()) };
        match parse_row(source, &record.fields, &map.columns, codes) {
            Ok(row) => {
                if report.sample.len() < 5 {
                    report.sample.push(row.describe());
                }
                row.add_to(batch);
                report.rows_accepted += 1;
            }
            Err(reason) => {
                rejects.push(Reject { file: file.into(), line: record.line, raw: raw(), reason });
                report.rows_rejected += 1;
            }
        }
    }
    Ok(())
}

/// One accepted row, resolved to lake keys.
struct Row {
    store_id: i32,
    department_id: i32,
    at: NaiveDateTime,
    footfall: i64,
    ticket: Option<String>,
    revenue: Decimal,
    units: i64,
}

impl Row {
    fn hour(&self) -> NaiveDateTime {
        self.at.date().and_hms_opt(self.at.hour(), 0, 0).expect("an hour of a valid date")
    }

    fn add_to(self, batch: &mut Batch) {
        let t = batch.entry((self.store_id, self.department_id, self.hour())).or_default();
        t.footfall += self.footfall;
        t.revenue += self.revenue;
        t.units += self.units;
        if let Some(ticket) = self.ticket {
            t.tickets.insert(ticket);
        }
    }

    fn describe(&self) -> String {
        match &self.ticket {
            Some(t) => format!(
                "store_id={} department_id={} at={} ticket={t} amount={} quantity={}",
                self.store_id, self.department_id, self.at, self.revenue, self.units
            ),
            None => format!("store_id={} department_id={} at={} count_in={}", self.store_id, self.department_id, self.at, self.footfall),
        }
    }
}

fn parse_row(source: &Source, fields: &[String], columns: &[Option<usize>], codes: &commit::ReferenceCodes) -> std::result::Result<Row, String> {
    let specs = fields_of(source.kind);
    let mut values: HashMap<&str, Value> = HashMap::new();
    for (spec, col) in specs.iter().zip(columns) {
        let Some(c) = col else { continue };
        let raw = fields.get(*c).map(String::as_str).unwrap_or("");
        if raw.trim().is_empty() && !spec.required {
            continue;
        }
        let format = source.mapping.get(spec.name).and_then(|m| m.format.as_deref());
        let v = parse_value(raw, spec.ty, format).map_err(|e| format!("{}: {e}", spec.name))?;
        values.insert(spec.name, v);
    }
    let text = |name: &str| match values.get(name) {
        Some(Value::Text(s)) => Ok(s.clone()),
        _ => Err(format!("{name}: missing")),
    };
    let int = |name: &str| match values.get(name) {
        Some(Value::Integer(n)) => Ok(*n),
        _ => Err(format!("{name}: missing")),
    };
    let time = |name: &str| match values.get(name) {
        Some(Value::Timestamp(t)) => Ok(*t),
        _ => Err(format!("{name}: missing")),
    };
    let store_code = text("store_code")?;
    let store_id = codes.store(&store_code).ok_or_else(|| format!("store_code: unknown store `{store_code}`"))?;
    match source.kind {
        Kind::SensorCounts => {
            let zone = text("zone_code")?;
            let department_id = codes.department(&zone).ok_or_else(|| format!("zone_code: unknown department `{zone}`"))?;
            let count = int("count_in")?;
            if count < 0 {
                return Err(format!("count_in: {count} is negative"));
            }
            if let Some(Value::Integer(out)) = values.get("count_out")
                && *out < 0
            {
                return Err(format!("count_out: {out} is negative"));
            }
            Ok(Row { store_id, department_id, at: time("interval_start")?, footfall: count, ticket: None, revenue: Decimal::ZERO, units: 0 })
        }
        Kind::PosTickets => {
            let dept = text("department_code")?;
            let department_id = codes.department(&dept).ok_or_else(|| format!("department_code: unknown department `{dept}`"))?;
            let amount = match values.get("amount") {
                Some(Value::Decimal(d)) => d.round_dp(2),
                _ => return Err("amount: missing".into()),
            };
            // The lake keeps money as numeric(12, 2).
            if amount.abs() >= Decimal::from(10_000_000_000i64) {
                return Err(format!("amount: {amount} is out of range (at most 9999999999.99)"));
            }
            Ok(Row {
                store_id,
                department_id,
                at: time("timestamp")?,
                footfall: 0,
                ticket: Some(text("ticket_id")?),
                revenue: amount,
                units: int("quantity")?,
            })
        }
    }
}

fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    for r in rejects {
        w.serialize(r).map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    }
    w.flush().map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// A file as last seen by the watcher: its size and modification time.
type Seen = (u64, Option<std::time::SystemTime>);

/// `--watch`: polls the source's `input.path` every `interval` and ingests, as one batch (one
/// commit) per file, each file that is new or changed and has been *settled* for a whole interval (same
/// size and modification time at two polls in a row, so a file still being written — by an
/// FTP upload, a copy — is left until it is complete). A file is ingested once: its content
/// hash is recorded in the commit, so a file seen again (renamed, touched, or after a restart)
/// is skipped. A file that fails (too many rejects, unreadable) is logged and not retried
/// until it changes. Returns when `shutdown` completes, after the batch in hand.
pub async fn watch(
    lake: &Lake,
    source: &Source,
    opts: &Options,
    interval: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_batch: impl FnMut(&Result<Summary>),
) -> Result<()> {
    if source.input.path.is_none() {
        return Err(Error::config(format!("source `{}`: --watch needs `input: {{path: …}}` (a folder glob) in the definition", source.name))
            .with_hint("e.g. input: {path: incoming/sensors/*.csv}"));
    }
    tokio::pin!(shutdown);
    let mut last: HashMap<PathBuf, Seen> = HashMap::new();
    let mut done: HashMap<PathBuf, Seen> = HashMap::new();
    loop {
        let mut settled = Vec::new();
        let mut now: HashMap<PathBuf, Seen> = HashMap::new();
        for path in input_files(source)? {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let seen = (meta.len(), meta.modified().ok());
            if last.get(&path) == Some(&seen) && done.get(&path) != Some(&seen) && seen.0 > 0 {
                settled.push(path.clone());
            }
            now.insert(path, seen);
        }
        last = now;
        // One batch (one commit) per file, so that a bad file never holds back good ones.
        for path in settled {
            let batch_opts = Options { files: vec![path.clone()], ..opts.clone() };
            let outcome = run(lake, source, &batch_opts).await;
            match &outcome {
                Ok(s) => tracing::info!(source = %source.name, file = %path.display(), rows = s.rows_accepted, version = ?s.committed_version, "file ingested"),
                Err(e) => tracing::warn!(source = %source.name, file = %path.display(), error = %e.message, "file failed; it waits until it changes"),
            }
            on_batch(&outcome);
            if let Some(seen) = last.get(&path) {
                done.insert(path, *seen);
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
