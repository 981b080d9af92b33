//! One ingest writer at a time per lake: the lock every writing run holds from reading the
//! lake's snapshot (reference tables, ingested files) to its last commit, so that two ingests
//! (two `--ingest-watch` sources, a CLI run beside a watcher, two CLI runs) never allocate the
//! same new store or department key and never check "already ingested" against a snapshot the
//! other is about to change.
//!
//! - **Local lake**: an OS lock (`flock`) on `<lake>/_lakecube/ingest.lock`. The kernel releases
//!   it when its holder exits, however it exits (`kill -9` included).
//! - **Object store** (`s3://`, `memory://`): a lease object `<lake>/_lakecube/ingest.lock`
//!   holding its owner and an expiry ([`LEASE`] from its last write). It is created with a
//!   conditional put (`If-None-Match: *` on S3), renewed every [`RENEW`] and released by
//!   conditional updates (`If-Match` its ETag); a lease past its expiry (its owner died) is taken
//!   over by a conditional update, so a killed owner blocks others for at most [`LEASE`]. A
//!   holder that could not renew before its lease ran out has lost the lock and commits nothing
//!   ([`IngestLock::check`]). Writers' clocks must agree to well within [`LEASE`].
//!
//! A run that finds the lock held waits for it, polling, and logs who holds it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Lake, store_for_url};

/// How long an object-store lease lasts after its last write.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a held object-store lease is renewed.
pub const RENEW: Duration = Duration::from_secs(10);
/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(200);

/// The lock object's (or file's) path under the lake root.
const LOCK_PATH: &str = "_lakecube/ingest.lock";

/// A held ingest lock; released by [`IngestLock::release`] (or, if dropped, by the process
/// exiting for a file lock and by the lease running out for a lease).
pub struct IngestLock {
    held: Held,
}

enum Held {
    /// The open, locked file.
    File(std::fs::File),
    Lease(Lease),
}

/// What a lease object holds.
#[derive(Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    /// Milliseconds since 1970-01-01 UTC.
    expires_ms: i64,
}

/// A held lease: its object, the version last written, and the renewing task.
struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    owner: String,
    state: Arc<Mutex<LeaseState>>,
    renewer: tokio::task::JoinHandle<()>,
}

struct LeaseState {
    version: UpdateVersion,
    expires_ms: i64,
    /// Someone else wrote the object: the lock is theirs.
    lost: bool,
}

/// Who this process is, for the lock's owner field.
fn owner(label: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "?".into());
    format!("lakecube pid {} on {host} ({label}), {:016x}", std::process::id(), rand::random::<u64>())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Takes the lake's ingest lock, waiting while another writer holds it. `label` names the
/// holder in the lock (the source).
pub async fn acquire(lake: &Lake, label: &str) -> Result<IngestLock> {
    let root = lake.root();
    if root.scheme() == "file" {
        let dir = root.to_file_path().map_err(|_| Error::internal(format!("{root} is not a local path")))?;
        return acquire_file(dir.join(LOCK_PATH), label).await;
    }
    let (store, prefix) = store_for_url(root)?;
    let base = prefix.as_ref().trim_end_matches('/').to_string();
    check_conditional_writes(store.as_ref(), &base, &lake.display()).await?;
    let path = Path::from(format!("{base}/{LOCK_PATH}").trim_start_matches('/'));
    acquire_lease(store, path, label, LEASE, RENEW).await
}

/// Refuses to write to a store that ignores conditional puts: both the lease and Delta's
/// commits (`_delta_log/N.json`, created with `If-None-Match: *`) rely on a second create of
/// one object failing. A store that lets it through would let two commits overwrite each
/// other silently, and the ingester would report success. Checked once per process and lake.
async fn check_conditional_writes(store: &dyn ObjectStore, base: &str, lake: &str) -> Result<()> {
    static CHECKED: std::sync::OnceLock<Mutex<std::collections::HashSet<String>>> = std::sync::OnceLock::new();
    let checked = CHECKED.get_or_init(Default::default);
    if checked.lock().map(|c| c.contains(lake)).unwrap_or(false) {
        return Ok(());
    }
    let probe = Path::from(format!("{base}/_lakecube/conditional-put-probe-{:016x}", rand::random::<u64>()).trim_start_matches('/'));
    let opts = || object_store::PutOptions { mode: PutMode::Create, ..Default::default() };
    store.put_opts(&probe, "1".into(), opts()).await.map_err(|e| store_error(&probe, e))?;
    let second = store.put_opts(&probe, "2".into(), opts()).await;
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => {
            if let Ok(mut c) = checked.lock() {
                c.insert(lake.to_string());
            }
            Ok(())
        }
        Err(e) => Err(store_error(&probe, e)),
        Ok(_) => Err(Error::lake(format!(
            "the object store of {lake} ignores conditional writes (If-None-Match): two commits could overwrite each other unnoticed, so lakecube will not write to it"
        ))
        .with_hint("use a store that honours If-None-Match on PUT (AWS S3, MinIO, Cloudflare R2, Ceph RGW ≥ 18); reading the lake is unaffected")),
    }
}

async fn acquire_file(path: PathBuf, label: &str) -> Result<IngestLock> {
    let error = |e: std::io::Error| {
        Error::lake(format!("cannot take the ingest lock {}: {e}", path.display())).with_hint("check that this user may write to the lake folder")
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(error)?;
    let mut logged = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if !logged {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    tracing::info!(lock = %path.display(), holder = %holder.trim(), "another ingest holds the lake's ingest lock; waiting");
                    logged = true;
                }
                tokio::time::sleep(POLL).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(error(e)),
        }
    }
    // Who holds it, for the waiting runs' log line.
    use std::io::{Seek, Write};
    let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(owner(label).as_bytes()));
    Ok(IngestLock { held: Held::File(file) })
}

fn store_error(path: &Path, e: object_store::Error) -> Error {
    let first = e.to_string().lines().next().unwrap_or_default().to_string();
    Error::lake(format!("cannot take the ingest lock {path}: {first}"))
        .with_hint("the lake's store must support conditional writes (If-None-Match and If-Match), as AWS S3, MinIO and R2 do")
}

async fn acquire_lease(store: Arc<dyn ObjectStore>, path: Path, label: &str, lease: Duration, renew: Duration) -> Result<IngestLock> {
    let owner = owner(label);
    let lease_ms = lease.as_millis() as i64;
    let mut logged = false;
    loop {
        let expires_ms = now_ms() + lease_ms;
        let payload = || serde_json::to_vec(&LeaseBody { owner: owner.clone(), expires_ms }).expect("a lease serializes");
        let written = match store.put_opts(&path, payload().into(), PutMode::Create.into()).await {
            Ok(r) => Some(r),
            Err(object_store::Error::AlreadyExists { .. }) => match store.get(&path).await {
                Ok(current) => {
                    let version = UpdateVersion { e_tag: current.meta.e_tag.clone(), version: current.meta.version.clone() };
                    let held = current.bytes().await.ok().and_then(|b| serde_json::from_slice::<LeaseBody>(&b).ok());
                    match held {
                        Some(h) if h.expires_ms > now_ms() => {
                            if !logged {
                                tracing::info!(lock = %path, holder = %h.owner, "another ingest holds the lake's ingest lock; waiting");
                                logged = true;
                            }
                            None
                        }
                        // Released, expired (its owner died) or unreadable: take it over, unless
                        // another writer does first.
                        _ => match store.put_opts(&path, payload().into(), PutMode::Update(version).into()).await {
                            Ok(r) => Some(r),
                            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } | object_store::Error::NotFound { .. }) => None,
                            Err(e) => return Err(store_error(&path, e)),
                        },
                    }
                }
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_error(&path, e)),
            },
            Err(e) => return Err(store_error(&path, e)),
        };
        if let Some(r) = written {
            let version = UpdateVersion { e_tag: r.e_tag, version: r.version };
            let state = Arc::new(Mutex::new(LeaseState { version, expires_ms, lost: false }));
            let renewer = tokio::spawn(renew_lease(store.clone(), path.clone(), owner.clone(), state.clone(), lease_ms, renew));
            return Ok(IngestLock { held: Held::Lease(Lease { store, path, owner, state, renewer }) });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Rewrites the lease with a new expiry every `renew`, each write conditional on the last; stops
/// when someone else wrote it (the lock was taken over). A failed write is tried again at the
/// next tick: the lease is lost only when it runs out or is taken over.
async fn renew_lease(store: Arc<dyn ObjectStore>, path: Path, owner: String, state: Arc<Mutex<LeaseState>>, lease_ms: i64, renew: Duration) {
    loop {
        tokio::time::sleep(renew).await;
        let version = state.lock().expect("lease state").version.clone();
        let expires_ms = now_ms() + lease_ms;
        let payload = serde_json::to_vec(&LeaseBody { owner: owner.clone(), expires_ms }).expect("a lease serializes");
        match store.put_opts(&path, payload.into(), PutMode::Update(version).into()).await {
            Ok(r) => {
                let mut s = state.lock().expect("lease state");
                s.version = UpdateVersion { e_tag: r.e_tag, version: r.version };
                s.expires_ms = expires_ms;
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                tracing::error!(lock = %path, "the ingest lock was taken over by another writer: this run commits nothing more");
                state.lock().expect("lease state").lost = true;
                return;
            }
            Err(e) => tracing::warn!(lock = %path, error = %e, "cannot renew the ingest lock's lease; trying again"),
        }
    }
}

impl IngestLock {
    /// Whether the lock is still held: call before each commit (a lease that ran out or was
    /// taken over is an error, and nothing more may be written).
    pub fn check(&self) -> Result<()> {
        let Held::Lease(l) = &self.held else { return Ok(()) };
        let s = l.state.lock().expect("lease state");
        if s.lost || s.expires_ms <= now_ms() {
            return Err(Error::lake(format!("the lake's ingest lease {} ran out or was taken over before this run's commit; nothing more was written", l.path))
                .with_hint("the lake's store could not be written for too long; ingest again once it answers"));
        }
        Ok(())
    }

    /// Releases the lock: unlocks the file, or stops renewing and marks the lease expired (by a
    /// write conditional on this holder's last one, so a lock taken over is left alone).
    pub async fn release(self) {
        match self.held {
            Held::File(f) => {
                let _ = f.unlock();
            }
            Held::Lease(l) => {
                l.renewer.abort();
                let (version, lost) = {
                    let s = l.state.lock().expect("lease state");
                    (s.version.clone(), s.lost)
                };
                if lost {
                    return;
                }
                let payload = serde_json::to_vec(&LeaseBody { owner: l.owner.clone(), expires_ms: 0 }).expect("a lease serializes");
                if let Err(e) = l.store.put_opts(&l.path, payload.into(), PutMode::Update(version).into()).await {
                    tracing::warn!(lock = %l.path, error = %e, "cannot release the ingest lock; it frees itself when its lease runs out");
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store() -> (Arc<dyn ObjectStore>, Path) {
        (Arc::new(InMemory::new()), Path::from("lake/_lakecube/ingest.lock"))
    }

    /// A store that takes every put as an overwrite, as some S3-compatible servers do.
    #[derive(Debug)]
    struct IgnoresConditions(InMemory);

    impl std::fmt::Display for IgnoresConditions {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "IgnoresConditions")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for IgnoresConditions {
        async fn put_opts(&self, l: &Path, p: object_store::PutPayload, mut o: object_store::PutOptions) -> object_store::Result<object_store::PutResult> {
            o.mode = PutMode::Overwrite;
            self.0.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(&self, l: &Path, o: object_store::PutMultipartOptions) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: object_store::GetOptions) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(l, o).await
        }
        fn delete_stream(&self, l: futures::stream::BoxStream<'static, object_store::Result<Path>>) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: object_store::CopyOptions) -> object_store::Result<()> {
            self.0.copy_opts(f, t, o).await
        }
    }

    /// A store that lets a second create of one object through is refused before any write.
    #[tokio::test]
    async fn stores_ignoring_conditional_writes_are_refused() {
        let e = check_conditional_writes(&IgnoresConditions(InMemory::new()), "lake", "s3://bad/lake").await.unwrap_err();
        assert!(e.message.contains("ignores conditional writes"), "{}", e.message);
        assert!(e.hint.unwrap_or_default().contains("If-None-Match"));
        check_conditional_writes(&InMemory::new(), "lake", "memory://good").await.unwrap();
    }

    /// A second writer waits until the first releases; then it gets the lock.
    #[tokio::test]
    async fn a_lease_is_held_by_one_writer_at_a_time() {
        let (store, path) = store();
        let first = acquire_lease(store.clone(), path.clone(), "a", LEASE, RENEW).await.unwrap();
        let second = tokio::spawn({
            let (store, path) = (store.clone(), path.clone());
            async move { acquire_lease(store, path, "b", LEASE, RENEW).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!second.is_finished(), "the second writer must wait");
        first.check().unwrap();
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(5), second).await.expect("the released lock is taken").unwrap();
        second.check().unwrap();
        second.release().await;
    }

    /// A lease whose owner stopped renewing (killed) is taken over once it has run out, and the
    /// old owner's check then fails: it may not commit.
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_old_owner_commits_nothing() {
        let (store, path) = store();
        let dead = acquire_lease(store.clone(), path.clone(), "dead", Duration::from_millis(500), Duration::from_secs(3600)).await.unwrap();
        let started = std::time::Instant::now();
        let next = acquire_lease(store.clone(), path.clone(), "next", LEASE, RENEW).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "taken over only after the lease ran out");
        let e = dead.check().unwrap_err();
        assert!(e.message.contains("ran out or was taken over"), "{}", e.message);
        next.check().unwrap();
        // The dead owner's release leaves the new holder's lease alone.
        dead.release().await;
        let held: LeaseBody = serde_json::from_slice(&store.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
        assert!(held.owner.contains("(next)") && held.expires_ms > now_ms(), "{}", held.owner);
        next.release().await;
    }

    /// A held lease is renewed: it outlives its first expiry.
    #[tokio::test]
    async fn a_held_lease_is_renewed() {
        let (store, path) = store();
        let held = acquire_lease(store.clone(), path.clone(), "a", Duration::from_millis(600), Duration::from_millis(100)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        held.check().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(500), acquire_lease(store.clone(), path.clone(), "b", LEASE, RENEW)).await;
        assert!(waiting.is_err(), "a renewed lease is not taken over");
        held.release().await;
    }

    /// Two file locks on one path, even in one process, exclude each other.
    #[tokio::test]
    async fn a_file_lock_is_held_by_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_PATH);
        let first = acquire_file(path.clone(), "a").await.unwrap();
        let second = tokio::spawn(acquire_file(path.clone(), "b"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!second.is_finished(), "the second writer must wait");
        first.release().await;
        let second = tokio::time::timeout(Duration::from_secs(5), second).await.expect("the released lock is taken").unwrap().unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("(b)"));
        second.release().await;
    }
}
