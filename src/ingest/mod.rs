//! `lakecube ingest`: raw exports into the lake, by a YAML source definition, exactly once
//! and atomically.
//!
//! A run reads each file of a source, or the spooled answer of its PostgreSQL query or HTTP
//! API ([`fetch`]), streamed ([`read`]: encoding and delimiter detected), maps its
//! headers to the kind's fields ([`fields`]: built-in English and French aliases plus the
//! source's), validates and parses every row (bad rows become rejects with file, line, raw text
//! and reason), resolves store and department codes against the lake's reference tables
//! (unknown codes are rejects unless `create_missing`), and aggregates to the lake's grain:
//! one row per store, department and hour (a `stores` or `departments` source upserts its
//! rows instead, [`reference`]). The whole batch is then merged into `traffic` in **one Delta commit**
//! ([`commit`]): a store-hour already in the lake gets the new counts added, a new one is
//! inserted. The commit carries one Delta application transaction per file, keyed by the
//! file's SHA-256, so a file already ingested (or a second copy in the same batch) is skipped
//! and a batch retried after a crash is committed once; and two per file name ([`NameIds`]),
//! so a file that grew since it was ingested under that name is refused. A writing run holds
//! the lake's ingest lock ([`lock`]) from reading the lake to its last commit.

pub mod commit;
pub mod expr;
pub mod fetch;
pub mod fields;
pub mod kinds;
pub mod lock;
pub mod maintain;
pub mod read;
pub mod record;
pub mod reference;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Lake;
use fields::{Value, parse_value};
use kinds::{FieldType, Kind, fields_of};
use source::Source;

/// What to ingest and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files to read; when empty, the source's input (`path` glob, `postgres` query, `http`).
    pub files: Vec<PathBuf>,
    /// Read, validate and report, but write nothing to the lake.
    pub dry_run: bool,
    /// Overrides the source's `max_reject_share`.
    pub max_reject_share: Option<f64>,
    /// Where the run summary (JSON) and the rejects (CSV) are written.
    pub report_dir: PathBuf,
    /// A progress bar on a terminal (else a log line every 10 s of a long file).
    pub progress: bool,
}

impl Options {
    /// The options for these files, reports in `report_dir`, no progress bar.
    pub fn new(files: Vec<PathBuf>, report_dir: impl Into<PathBuf>) -> Options {
        Options { files, dry_run: false, max_reject_share: None, report_dir: report_dir.into(), progress: false }
    }
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

/// Hourly totals of one store, department and hour (64 bytes with its key: a batch's memory
/// grows with its store-hours, not with its rows or bytes).
#[derive(Debug, Default, Clone)]
pub struct HourTotals {
    pub footfall: i64,
    /// Revenue in cents (each amount is below 10¹² cents; sums saturate, and a sum beyond the
    /// lake's numeric(12, 2) fails the batch before writing).
    pub revenue_cents: i64,
    pub units: i64,
    /// The tickets' lines, by a 64-bit hash of the ticket id (memory per line, not per id's
    /// length; a collision among one store-hour's tickets has odds of about n²/2⁶⁵). Counted
    /// distinct by [`HourTotals::transactions`].
    pub tickets: Vec<u64>,
}

impl HourTotals {
    fn absorb(&mut self, other: HourTotals) {
        self.footfall = self.footfall.saturating_add(other.footfall);
        self.revenue_cents = self.revenue_cents.saturating_add(other.revenue_cents);
        self.units = self.units.saturating_add(other.units);
        self.tickets.extend(other.tickets);
    }

    /// Distinct tickets (sorts and dedups the ticket hashes in place).
    pub fn transactions(&mut self) -> i64 {
        self.tickets.sort_unstable();
        self.tickets.dedup();
        self.tickets.len() as i64
    }
}

/// A store-department-hour: (store_id, department_id, hours since 1970-01-01 00:00).
pub type HourKey = (i32, i32, i64);

/// The batch to commit: hourly totals by store, department and hour.
pub type Batch = foldhash::HashMap<HourKey, HourTotals>;

/// The Delta application-transaction id that marks a file of a source as ingested.
pub fn app_id(source: &str, sha256: &str) -> String {
    format!("lakecube-ingest/{source}/{sha256}")
}

/// The application-transaction ids that remember what a file *name* of a source held when it
/// was ingested, so that a file later grown under the same name is recognised. deltalake looks
/// application transactions up by id only (it cannot list them), hence two ids, both with the
/// byte length ingested as their version: one by the name alone (the latest length), and one
/// by the name and the content's SHA-256 (to check that a new file begins with those bytes).
struct NameIds {
    prefix: String,
}

impl NameIds {
    fn new(source: &str, name: &str) -> NameIds {
        use sha2::Digest;
        NameIds { prefix: format!("lakecube-ingest-name/{source}/{}", hex::encode(sha2::Sha256::digest(name.as_bytes()))) }
    }

    /// The id whose version is the length last ingested under this name.
    fn latest(&self) -> String {
        self.prefix.clone()
    }

    /// The id recording that this name held this content.
    fn content(&self, sha256: &str) -> String {
        format!("{}/{sha256}", self.prefix)
    }
}

/// A file's name within its source (its last path component).
fn file_name(path: &std::path::Path, shown: &str) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| shown.to_string())
}

/// The largest reject share `--max-reject-share` or the source allows, checked.
fn allowed_reject_share(source: &Source, opts: &Options) -> Result<f64> {
    let allowed = opts.max_reject_share.unwrap_or(source.max_reject_share);
    if !(0.0..=1.0).contains(&allowed) {
        return Err(Error::config(format!("--max-reject-share must be between 0 and 1, not {allowed}")).with_hint("e.g. --max-reject-share 0.05 allows 5 % of rows rejected"));
    }
    Ok(allowed)
}

/// Runs one ingest of `source` into `lake`. A writing run holds the lake's ingest lock
/// ([`lock`]) from reading the lake to its last commit.
pub async fn run(lake: &Lake, source: &Source, opts: &Options) -> Result<Summary> {
    let started = std::time::Instant::now();
    let allowed = allowed_reject_share(source, opts)?;
    let spool = tempfile::tempdir().map_err(|e| Error::config(format!("cannot make a temporary folder: {e}")))?;
    let inputs: Vec<(PathBuf, String)> = if !opts.files.is_empty() {
        opts.files.iter().map(|p| (p.clone(), p.display().to_string())).collect()
    } else if let Some(pg) = &source.input.postgres {
        vec![fetch::postgres(pg, spool.path(), &source.name).await?]
    } else if let Some(h) = &source.input.http {
        vec![fetch::http(h, spool.path(), &source.name).await?]
    } else {
        input_files(source)?.into_iter().map(|p| (p.clone(), p.display().to_string())).collect()
    };
    if inputs.is_empty() {
        return Err(Error::config(format!("source `{}`: no file to ingest", source.name))
            .with_hint("pass --file PATH, or set `input: {path: …}` in the source definition"));
    }
    let lock = if opts.dry_run { None } else { Some(lock::acquire(lake, &source.name).await?) };
    let outcome = ingest_inputs(lake, source, opts, inputs, allowed, lock.as_ref(), started).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    outcome
}

/// The body of [`run`], over its inputs, under the lake's ingest lock (none for a dry run).
async fn ingest_inputs(
    lake: &Lake,
    source: &Source,
    opts: &Options,
    inputs: Vec<(PathBuf, String)>,
    allowed: f64,
    lock: Option<&lock::IngestLock>,
    started: std::time::Instant,
) -> Result<Summary> {
    let check_lock = || lock.map_or(Ok(()), |l| l.check());
    let mut refs = Refs {
        stores: reference::Members::load(lake, crate::storage::schema::STORES).await?,
        departments: reference::Members::load(lake, crate::storage::schema::DEPARTMENTS).await?,
    };
    let target_name = source.kind.target();
    let target = lake.require_table(target_name).await?;
    std::fs::create_dir_all(&opts.report_dir)
        .map_err(|e| Error::config(format!("cannot create the report folder {}: {e}", opts.report_dir.display())))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut rejects = Rejects::new(opts.report_dir.join(format!("{}-{stamp}-rejects.csv", source.name)));
    let mut batch = Batch::default();
    let mut reports = Vec::new();
    // The application transactions the commit records (id → version): each new content, and
    // each file name with the content and length it now holds.
    let mut txns: BTreeMap<String, i64> = BTreeMap::new();
    // Content read in this batch (SHA-256 → the file that brought it).
    let mut read_here: HashMap<String, String> = HashMap::new();
    for (path, shown) in inputs {
        let format = source.format.of(&path.to_string_lossy());
        let names = NameIds::new(&source.name, &file_name(&path, &shown));
        let earlier_len = commit::recorded_version(&target, &names.latest()).await?.and_then(|l| u64::try_from(l).ok());
        let probe = {
            let (path, shown, csv) = (path.clone(), shown.clone(), source.csv.clone());
            blocking(move || read::probe(&path, &csv, &shown, format.is_text(), earlier_len)).await?
        };
        if let (Some(len), Some(prefix_sha)) = (earlier_len, &probe.prefix_sha256) {
            if commit::recorded_version(&target, &names.content(prefix_sha)).await? == Some(len as i64) {
                return Err(Error::new(
                    ErrorKind::DataException,
                    format!("{shown} begins with the {len} bytes of a file ingested before (same name); its earlier rows are already counted: nothing was written"),
                )
                .with_hint("export only the new rows to a new file, or, if the earlier file was wrong, correct the lake before ingesting the whole file under a new name"));
            }
        }
        let already = commit::already_ingested(&target, &app_id(&source.name, &probe.sha256)).await?;
        let mut report = FileReport {
            path: shown.clone(),
            sha256: probe.sha256.clone(),
            already_ingested: already,
            duplicate_of: None,
            format: format!("{format:?}").to_lowercase(),
            bytes: probe.bytes,
            encoding: format.is_text().then(|| probe.encoding.name().to_string()),
            delimiter: (format == source::Format::Csv).then(|| probe.delimiter_name()),
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
        let bytes = i64::try_from(probe.bytes).unwrap_or(i64::MAX);
        if let Some(first) = read_here.get(&probe.sha256) {
            tracing::info!(file = %shown, duplicate_of = %first, "same content as another file of this batch: counted once");
            report.duplicate_of = Some(first.clone());
            txns.insert(names.latest(), bytes);
            txns.insert(names.content(&probe.sha256), bytes);
            reports.push(report);
            continue;
        }
        read_here.insert(probe.sha256.clone(), shown.clone());
        let sha = probe.sha256.clone();
        let job = {
            let (source, progress) = (source.clone(), opts.progress);
            move || {
                let mut sink = FileSink::new(&source, &shown, &mut refs, &mut rejects, report, progress);
                let read_into = |sink: &mut dyn record::Sink| match format {
                    source::Format::Parquet => read::read_parquet(&path, &probe, &shown, sink),
                    source::Format::Xlsx => read::read_xlsx(&path, &probe, &shown, source.xlsx.sheet.as_deref(), sink),
                    source::Format::Json | source::Format::Ndjson => read::read_json(&path, &probe, &shown, sink),
                    source::Format::Csv | source::Format::Auto => read::read_csv(&path, &probe, &shown, sink),
                };
                let read = match expr::Computing::wrap(&source, &shown, &mut sink) {
                    Some(mut computing) => read_into(&mut computing).and_then(|_| computing.flush()),
                    None => read_into(&mut sink),
                };
                let outcome = read.map(|_| sink.finish());
                (outcome, rejects, refs)
            }
        };
        let (outcome, back, back_refs) = tokio::task::spawn_blocking(job).await.map_err(|e| Error::internal(format!("the reader stopped: {e}")))?;
        (rejects, refs) = (back, back_refs);
        let (file_batch, report) = outcome?;
        if batch.is_empty() {
            batch = file_batch;
        } else {
            for (k, v) in file_batch {
                batch.entry(k).or_default().absorb(v);
            }
        }
        txns.insert(app_id(&source.name, &sha), 1);
        txns.insert(names.latest(), bytes);
        txns.insert(names.content(&sha), bytes);
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
        members_changed: (refs.stores.changed() + refs.departments.changed()) as u64,
        committed_version: None,
        duration_ms: 0,
        rejects_file: rejects.finish()?,
    };
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
    } else if opts.dry_run {
        Ok(())
    } else {
        let txns: Vec<(String, i64)> = txns.into_iter().collect();
        match source.kind {
            Kind::Stores | Kind::Departments => {
                let members = if source.kind == Kind::Stores { &refs.stores } else { &refs.departments };
                if members.is_changed() {
                    check_lock()?;
                    summary.committed_version = Some(members.commit(lake, &txns).await?);
                }
            }
            Kind::SensorCounts | Kind::PosTickets => {
                // Members made by `create_missing` first: facts never point at a member that is
                // not there. A crash between the two commits leaves only the new members, and
                // the re-run finds them.
                for members in [&refs.stores, &refs.departments] {
                    if members.is_changed() {
                        check_lock()?;
                        members.commit(lake, &[]).await?;
                    }
                }
                if !batch.is_empty() {
                    check_lock()?;
                    summary.committed_version = Some(commit::merge_into_traffic(target, batch, &txns).await?);
                }
            }
        }
        Ok(())
    };
    summary.duration_ms = started.elapsed().as_millis();
    let path = opts.report_dir.join(format!("{}-{stamp}-summary.json", source.name));
    std::fs::write(&path, serde_json::to_string_pretty(&summary).expect("summary serializes"))
        .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    outcome.map(|_| summary)
}

/// Runs blocking work (hashing, parsing) off the async threads, so a server running
/// `--ingest-watch` keeps answering queries.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("the reader stopped: {e}")))?
}

/// The files of the source's `input.path`: one file, or a glob's matches in name order.
fn input_files(source: &Source) -> Result<Vec<PathBuf>> {
    let Some(pattern) = &source.input.path else { return Ok(vec![]) };
    let paths = glob::glob(pattern).map_err(|e| Error::config(format!("source `{}`: input.path `{pattern}`: {e}", source.name)))?;
    let mut out: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| p.is_file()).collect();
    out.sort();
    Ok(out)
}

/// The rejects file, written as rejects come (never held in memory) and only if there are any.
struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
}

impl Rejects {
    fn new(path: PathBuf) -> Rejects {
        Rejects { path, writer: None }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::config(format!("cannot write {}: {e}", self.path.display()))
    }

    fn push(&mut self, r: &Reject) -> Result<()> {
        if self.writer.is_none() {
            self.writer = Some(csv::Writer::from_path(&self.path).map_err(|e| self.error(e))?);
        }
        let w = self.writer.as_mut().expect("opened above");
        w.serialize(r).map_err(|e| Error::config(format!("cannot write {}: {e}", self.path.display())))
    }

    /// Flushes; the file's path if any reject was written.
    fn finish(&mut self) -> Result<Option<String>> {
        match self.writer.as_mut() {
            None => Ok(None),
            Some(w) => {
                w.flush().map_err(|e| Error::config(format!("cannot write {}: {e}", self.path.display())))?;
                Ok(Some(self.path.display().to_string()))
            }
        }
    }
}

/// Progress of one file: a bar on a terminal, else a log line every 10 s.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    file: String,
    started: std::time::Instant,
    logged: std::time::Instant,
}

impl Progress {
    fn new(file: &str, wanted: bool) -> Progress {
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

    fn tick(&mut self, rows: u64) {
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

/// Reads one file's records into its own batch (merged into the run's once the whole file was
/// read) and the rejects.
struct FileSink<'a> {
    source: &'a Source,
    file: &'a str,
    refs: &'a mut Refs,
    rejects: &'a mut Rejects,
    report: FileReport,
    map: Option<fields::HeaderMap>,
    /// Per column: `None` shown as is in a reject, else how it is masked (personal data).
    masks: Vec<Option<Mask>>,
    times: fields::TimeParser,
    batch: Batch,
    progress: Progress,
}

impl<'a> FileSink<'a> {
    fn new(source: &'a Source, file: &'a str, refs: &'a mut Refs, rejects: &'a mut Rejects, report: FileReport, progress: bool) -> FileSink<'a> {
        let format = source.kind.time_field().and_then(|f| source.mapping.get(f.name)).and_then(|m| m.format.as_deref());
        FileSink {
            source,
            file,
            refs,
            rejects,
            report,
            map: None,
            masks: Vec::new(),
            times: fields::TimeParser::new(format),
            batch: Batch::default(),
            progress: Progress::new(file, progress),
        }
    }

    fn finish(self) -> (Batch, FileReport) {
        (self.batch, self.report)
    }

    /// A record as text for the rejects file, personal data masked: columns whose header names
    /// it and any value that looks like an e-mail are dropped, or shown as their salted hash
    /// when the source maps the column with `pii: hash`.
    fn raw_text(&self, fields: &dyn record::Fields) -> String {
        let salt = self.source.pii_salt.as_deref();
        (0..fields.len())
            .map(|i| {
                let v = fields.get(i).unwrap_or("");
                match self.masks.get(i).copied().flatten() {
                    Some(Mask::Hash) => pii_hash(salt.unwrap_or_default(), v),
                    Some(Mask::Drop) => "[personal data dropped]".to_string(),
                    None if fields::looks_like_email(v) => "[personal data dropped]".to_string(),
                    None => v.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(&fields.separator())
    }

    fn reject(&mut self, line: u64, raw: String, reason: String) -> Result<()> {
        self.report.rows_rejected += 1;
        self.rejects.push(&Reject { file: self.file.to_string(), line, raw, reason })
    }

    /// One record as a row of the lake's grain (`None` for a reference row, upserted into its
    /// members), or the reason it is rejected.
    fn parse(&mut self, fields: &dyn record::Fields) -> std::result::Result<Option<Row>, String> {
        let FileSink { source, refs, map, times, .. } = self;
        let map = map.as_ref().expect("headers come first");
        let specs = fields_of(source.kind);
        let value = |i: usize| map.value(i, fields).ok_or_else(|| format!("{}: empty value", specs[i].name));
        let int = |i: usize| match parse_value(value(i)?, FieldType::Integer, None) {
            Ok(Value::Integer(n)) => Ok(n),
            Ok(_) => unreachable!("an integer field parses to an integer"),
            Err(e) => Err(format!("{}: {e}", specs[i].name)),
        };
        let mut time = |i: usize| times.parse(value(i)?).map_err(|e| format!("{}: {e}", specs[i].name));
        let create = source.create_missing;
        match source.kind {
            Kind::SensorCounts => {
                use kinds::sensor::*;
                let at = time(INTERVAL_START)?;
                let store_id = refs.store(value(STORE_CODE)?, create, at, specs[STORE_CODE].name)?;
                let department_id = refs.department(value(ZONE_CODE)?, create, specs[ZONE_CODE].name)?;
                let count = int(COUNT_IN)?;
                if count < 0 {
                    return Err(format!("{}: {count} is negative", specs[COUNT_IN].name));
                }
                if map.value(COUNT_OUT, fields).is_some() {
                    let out = int(COUNT_OUT)?;
                    if out < 0 {
                        return Err(format!("{}: {out} is negative", specs[COUNT_OUT].name));
                    }
                }
                Ok(Some(Row { store_id, department_id, at, footfall: count, ticket: None, revenue_cents: 0, units: 0 }))
            }
            Kind::PosTickets => {
                use kinds::ticket::*;
                let ticket = value(TICKET_ID)?;
                let at = time(TIMESTAMP)?;
                let store_id = refs.store(value(STORE_CODE)?, create, at, specs[STORE_CODE].name)?;
                let department_id = refs.department(value(DEPARTMENT_CODE)?, create, specs[DEPARTMENT_CODE].name)?;
                let amount_field = specs[AMOUNT].name;
                let mut amount = match parse_value(value(AMOUNT)?, FieldType::Decimal, None) {
                    Ok(Value::Decimal(d)) => d.round_dp(2),
                    Ok(_) => unreachable!("a decimal field parses to a decimal"),
                    Err(e) => return Err(format!("{amount_field}: {e}")),
                };
                // The lake keeps money as numeric(12, 2).
                if amount.abs() >= Decimal::from(10_000_000_000i64) {
                    return Err(format!("{amount_field}: {amount} is out of range (at most 9999999999.99)"));
                }
                amount.rescale(2);
                let revenue_cents = amount.mantissa() as i64;
                Ok(Some(Row { store_id, department_id, at, footfall: 0, ticket: Some(ticket_hash(ticket)), revenue_cents, units: int(QUANTITY)? }))
            }
            Kind::Stores | Kind::Departments => {
                // Field names are the table's column names.
                let key = if source.kind == Kind::Stores { kinds::STORE_KEY } else { kinds::DEPARTMENT_KEY };
                let mut values = Vec::new();
                for (i, spec) in specs.iter().enumerate().filter(|(i, _)| *i != key) {
                    if let Some(raw) = map.value(i, fields) {
                        let format = source.mapping.get(spec.name).and_then(|m| m.format.as_deref());
                        let v = parse_value(raw, spec.ty, format).map_err(|e| format!("{}: {e}", spec.name))?;
                        values.push((spec.name, v.to_text()));
                    }
                }
                let members = if source.kind == Kind::Stores { &mut refs.stores } else { &mut refs.departments };
                members.upsert(value(key)?, &values)?;
                Ok(None)
            }
        }
    }
}

/// The reference tables during a run: codes resolved to keys, and the members it adds.
struct Refs {
    stores: reference::Members,
    departments: reference::Members,
}

impl Refs {
    /// The key of a store code; with `create`, a new store (named by its code, opened on the
    /// row's date, other columns `Unknown`) for a code the lake does not know.
    fn store(&mut self, code: &str, create: bool, at: NaiveDateTime, field: &str) -> std::result::Result<i32, String> {
        match self.stores.id(code) {
            Some(id) => Ok(id),
            None if create => {
                let opened = at.date().format("%Y-%m-%d").to_string();
                let unknown = || "Unknown".to_string();
                let values = [
                    ("store_name", code.trim().to_string()),
                    ("city", unknown()),
                    ("region", unknown()),
                    ("country", unknown()),
                    ("store_format", unknown()),
                    ("surface_m2", "0".to_string()),
                    ("opened_on", opened),
                ];
                self.stores.upsert(code, &values)
            }
            None => Err(format!("{field}: unknown store `{}`", code.trim())),
        }
    }

    /// The key of a department code; with `create`, a new department named by its code.
    fn department(&mut self, code: &str, create: bool, field: &str) -> std::result::Result<i32, String> {
        match self.departments.id(code) {
            Some(id) => Ok(id),
            None if create => self.departments.upsert(code, &[("department", code.trim().to_string()), ("department_family", "Unknown".to_string())]),
            None => Err(format!("{field}: unknown department `{}`", code.trim())),
        }
    }
}

/// How a column of personal data shows in the rejects file.
#[derive(Debug, Clone, Copy)]
enum Mask {
    Drop,
    Hash,
}

/// A value of personal data as `sha256:` and the first 16 hex digits of SHA-256(salt, value):
/// the same value always shows the same, the value itself cannot be read back without the salt.
fn pii_hash(salt: &str, value: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(value.trim().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..16])
}

/// A ticket id's 64-bit hash (SipHash with fixed keys: the same in every run).
fn ticket_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl record::Sink for FileSink<'_> {
    fn headers(&mut self, headers: &[String]) -> Result<()> {
        let map = fields::map_headers(self.source.kind, headers, &self.source.mapping, self.file)?;
        for (spec, col) in fields_of(self.source.kind).iter().zip(&map.columns) {
            match col {
                fields::Column::At(c) => {
                    self.report.mapping.insert(spec.name.to_string(), headers[*c].clone());
                }
                fields::Column::Constant(v) => {
                    self.report.mapping.insert(spec.name.to_string(), format!("constant `{v}`"));
                }
                fields::Column::Computed(_) => {
                    let sql = self.source.mapping.get(spec.name).and_then(|m| m.expression.clone()).unwrap_or_default();
                    self.report.mapping.insert(spec.name.to_string(), format!("expression `{sql}`"));
                }
                fields::Column::Missing => {}
            }
        }
        let hashed: Vec<usize> = fields_of(self.source.kind)
            .iter()
            .zip(&map.columns)
            .filter(|(spec, _)| self.source.mapping.get(spec.name).and_then(|m| m.pii).is_some())
            .filter_map(|(_, col)| match col {
                fields::Column::At(c) => Some(*c),
                _ => None,
            })
            .collect();
        self.masks = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if hashed.contains(&i) {
                    Some(Mask::Hash)
                } else if fields::is_pii_header(h) && !map.columns.contains(&fields::Column::At(i)) {
                    Some(Mask::Drop)
                } else {
                    None
                }
            })
            .collect();
        self.map = Some(map);
        Ok(())
    }

    fn record(&mut self, line: u64, fields: &dyn record::Fields) -> Result<()> {
        self.report.rows_read += 1;
        self.progress.tick(self.report.rows_read);
        match self.parse(fields) {
            Ok(row) => {
                if let Some(row) = row {
                    if self.report.sample.len() < 5 {
                        self.report.sample.push(row.describe());
                    }
                    row.add_to(&mut self.batch);
                }
                self.report.rows_accepted += 1;
                Ok(())
            }
            Err(reason) => {
                let raw = self.raw_text(fields);
                self.reject(line, raw, reason)
            }
        }
    }

    fn unreadable(&mut self, line: u64, reason: String) -> Result<()> {
        self.report.rows_read += 1;
        self.reject(line, String::new(), reason)
    }

    fn reject(&mut self, line: u64, fields: &dyn record::Fields, reason: String) -> Result<()> {
        self.report.rows_read += 1;
        self.progress.tick(self.report.rows_read);
        let raw = self.raw_text(fields);
        FileSink::reject(self, line, raw, reason)
    }
}

/// One accepted row, resolved to lake keys.
struct Row {
    store_id: i32,
    department_id: i32,
    at: NaiveDateTime,
    footfall: i64,
    ticket: Option<u64>,
    revenue_cents: i64,
    units: i64,
}

impl Row {
    /// Hours since 1970-01-01 00:00.
    fn hour(&self) -> i64 {
        self.at.and_utc().timestamp().div_euclid(3600)
    }

    fn add_to(self, batch: &mut Batch) {
        let t = batch.entry((self.store_id, self.department_id, self.hour())).or_default();
        t.footfall = t.footfall.saturating_add(self.footfall);
        t.revenue_cents = t.revenue_cents.saturating_add(self.revenue_cents);
        t.units = t.units.saturating_add(self.units);
        if let Some(ticket) = self.ticket {
            t.tickets.push(ticket);
        }
    }

    fn describe(&self) -> String {
        match &self.ticket {
            Some(_) => format!(
                "store_id={} department_id={} at={} amount={} quantity={}",
                self.store_id,
                self.department_id,
                self.at,
                Decimal::new(self.revenue_cents, 2),
                self.units
            ),
            None => format!("store_id={} department_id={} at={} count_in={}", self.store_id, self.department_id, self.at, self.footfall),
        }
    }
}

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
    if source.input.path.is_none() {
        return Err(Error::config(format!("source `{}`: --watch needs `input: {{path: …}}` (a folder glob) in the definition", source.name))
            .with_hint("e.g. input: {path: incoming/sensors/*.csv}"));
    }
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
