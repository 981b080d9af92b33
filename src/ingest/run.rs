//! One run of an ingest, the conductor: the inputs (files, or a fetched query or API answer),
//! each probed and hashed ([`read::probe`]), skipped when already ingested ([`commit`]), read
//! ([`read`], through [`expr`] when a field is computed) into a [`FileSink`], and the run's batch
//! committed once ([`commit::merge_into_traffic`], or the members for a reference source), under
//! the lake's ingest lock ([`lock`]); the summary and rejects written to the report folder.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::batch::Batch;
use super::kinds::Kind;
use super::report::{FileReport, Rejects, Summary};
use super::sink::{FileSink, Refs};
use super::source::{self, Source};
use super::{commit, expr, fetch, lock, read, record, reference};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::Lake;

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
        let provenance = serde_json::json!({
            "source": source.name,
            "kind": source.kind.name(),
            "files": summary.files.iter().map(|f| serde_json::json!({ "path": f.path, "sha256": f.sha256, "rows_accepted": f.rows_accepted })).collect::<Vec<_>>(),
            "rows_accepted": summary.rows_accepted,
        });
        match source.kind {
            Kind::Stores | Kind::Departments => {
                let members = if source.kind == Kind::Stores { &refs.stores } else { &refs.departments };
                if members.is_changed() {
                    check_lock()?;
                    summary.committed_version = Some(members.commit(lake, &txns, &provenance).await?);
                }
            }
            Kind::SensorCounts | Kind::PosTickets => {
                // Members made by `create_missing` first: facts never point at a member that is
                // not there. A crash between the two commits leaves only the new members, and
                // the re-run finds them.
                for members in [&refs.stores, &refs.departments] {
                    if members.is_changed() {
                        check_lock()?;
                        members.commit(lake, &[], &provenance).await?;
                    }
                }
                if !batch.is_empty() {
                    check_lock()?;
                    summary.committed_version = Some(commit::merge_into_traffic(lake, target, batch, &txns, &provenance).await?);
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
pub(super) fn input_files(source: &Source) -> Result<Vec<PathBuf>> {
    let Some(pattern) = &source.input.path else { return Ok(vec![]) };
    let paths = glob::glob(pattern).map_err(|e| Error::config(format!("source `{}`: input.path `{pattern}`: {e}", source.name)))?;
    let mut out: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| p.is_file()).collect();
    out.sort();
    Ok(out)
}
