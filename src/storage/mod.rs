//! The lake: where the Delta tables live, and how to open, create and list them.
//!
//! A lake is a root URL: a local folder (`data/demo`, `file:///srv/lake`), an S3 prefix
//! (`s3://bucket/prefix`, through object_store's own S3 client, configured by the usual `AWS_*`
//! variables) or `memory://` (one in-process store, for tests). Each table is a Delta table in
//! a folder under the root: `<root>/traffic/`, `<root>/stores/`, `<root>/departments/`.
//!
//! deltalake resolves object stores by URL scheme through global registries; [`Lake::open`]
//! registers ours for `memory` (one shared store for the process, so a lake written by
//! `generate` can be read back) and `s3` (built from the environment, without a cloud SDK).

pub mod crypto;
pub mod latest;

/// The key of an ingest commit's provenance (source, kind, files) in its Delta commit info,
/// written by `ingest::commit::properties`, read by `engine::history` (`lakecube.lake_history`).
pub const PROVENANCE_KEY: &str = "lakecubeIngest";
pub mod schema;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use deltalake::DeltaTable;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::{ObjectStore, ObjectStoreExt};
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// A lake location, resolved and with its object store registered.
#[derive(Clone, Debug)]
pub struct Lake {
    /// The root URL, always ending with `/`.
    root: Url,
    /// The keys its Parquet files are encrypted with ([`crypto`]); `None`: plain Parquet.
    keys: Option<Arc<crypto::Keys>>,
}

impl Lake {
    /// The Parquet writer properties of the lake's and its rollups' files when the lake has
    /// keys: zstd (level 3, deltalake's and DataFusion's default for writes) and the lake's
    /// encryption; `None` for plain files with deltalake's defaults.
    pub fn writer_properties(&self) -> Option<datafusion::parquet::file::properties::WriterProperties> {
        let zstd = datafusion::parquet::basic::ZstdLevel::try_new(3).expect("a valid zstd level");
        let base = datafusion::parquet::file::properties::WriterProperties::builder()
            .set_compression(datafusion::parquet::basic::Compression::ZSTD(zstd))
            .build();
        self.keys.as_ref().map(|k| k.writer_properties(base))
    }

    /// `state` with the lake's keys given to its Parquet scans ([`crypto::Decrypt`]) when the
    /// lake has keys: every session that reads the lake's files is made through this.
    pub fn with_keys(&self, state: datafusion::execution::SessionStateBuilder) -> datafusion::execution::SessionStateBuilder {
        match &self.keys {
            Some(keys) => state.with_physical_optimizer_rule(Arc::new(crypto::Decrypt::new(keys.clone()))),
            None => state,
        }
    }

    /// A DataFusion context to read the lake's tables in (with [`Lake::register_tables`]).
    pub fn context(&self) -> datafusion::prelude::SessionContext {
        datafusion::prelude::SessionContext::new_with_state(self.with_keys(datafusion::execution::SessionStateBuilder::new().with_default_features()).build())
    }

    /// A session for deltalake's operations that read the lake's files (merge, optimize):
    /// deltalake's own (its planner plans its write and merge nodes) with the lake's keys;
    /// `None` without keys, for deltalake to make its own.
    pub fn read_session(&self) -> Option<Arc<dyn datafusion::catalog::Session>> {
        self.keys.as_ref()?;
        let own = datafusion::execution::SessionStateBuilder::new_from_existing(deltalake::delta_datafusion::create_session().state());
        Some(Arc::new(self.with_keys(own).build()))
    }

    /// Parses a lake location (`path`, `file://…`, `s3://bucket/prefix`, `memory://`).
    ///
    /// With `create`, a missing local folder is created; without it, a missing local folder is
    /// an error.
    pub fn open(location: &str, create: bool) -> Result<Lake> {
        register_factories();
        let location = location.trim();
        if location.is_empty() {
            return Err(Error::config("the lake location is empty")
                .with_hint("pass --lake data/demo, --lake s3://bucket/prefix or --lake memory://"));
        }
        let mut root = if location.contains("://") {
            Url::parse(location).map_err(|e| {
                Error::config(format!("lake URL `{location}` is not valid: {e}"))
                    .with_hint("use a local path, file:///abs/path, s3://bucket/prefix or memory://")
            })?
        } else {
            local_url(FsPath::new(location), create)?
        };
        match root.scheme() {
            "file" => {
                let path = root.to_file_path().map_err(|_| {
                    Error::config(format!("lake URL `{location}` is not a local path"))
                })?;
                root = local_url(&path, create)?;
            }
            "memory" => {}
            "s3" | "s3a" => {
                if root.host_str().unwrap_or("").is_empty() {
                    return Err(Error::config(format!("lake URL `{location}` names no bucket"))
                        .with_hint("write s3://BUCKET/prefix"));
                }
                if root.scheme() == "s3a" {
                    root = Url::parse(&location.replacen("s3a://", "s3://", 1)).expect("valid url");
                }
            }
            other => {
                return Err(Error::config(format!(
                    "lake URL scheme `{other}://` is not supported"
                ))
                .with_hint("use a local path, file://, s3:// or memory://"));
            }
        }
        if !root.path().ends_with('/') {
            let p = format!("{}/", root.path());
            root.set_path(&p);
        }
        Ok(Lake { root, keys: crypto::Keys::from_env()? })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The lake root as the user should see it (a plain path for local lakes).
    pub fn display(&self) -> String {
        match self.root.to_file_path() {
            Ok(p) if self.root.scheme() == "file" => p.display().to_string(),
            _ => self.root.to_string(),
        }
    }

    /// The URL of a table's folder (no trailing slash, as deltalake wants it).
    pub fn table_url(&self, table: &str) -> Url {
        let mut u = self.root.join(table).expect("table names are plain identifiers");
        let p = u.path().trim_end_matches('/').to_string();
        u.set_path(&p);
        u
    }

    /// The object store holding the lake, rooted at the store's root (not the lake's prefix).
    pub fn object_store(&self) -> Result<Arc<dyn ObjectStore>> {
        store_for_url(&self.root).map(|(s, _)| s)
    }

    /// Opens a table's latest version; `Ok(None)` when the table does not exist.
    pub async fn open_table(&self, table: &str) -> Result<Option<DeltaTable>> {
        let url = self.table_url(table);
        if let Ok(path) = url.to_file_path() {
            if url.scheme() == "file" && !path.join("_delta_log").is_dir() {
                return Ok(None);
            }
        }
        let mut t = deltalake::DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| lake_error(self, e))?
            .build()
            .map_err(|e| lake_error(self, e))?;
        match t.load().await {
            Ok(()) => Ok(Some(t)),
            Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(lake_error(self, e)),
        }
    }

    /// Opens a table's latest version; a lake without it is an error with a hint.
    pub async fn require_table(&self, table: &str) -> Result<DeltaTable> {
        self.open_table(table)
            .await?
            .ok_or_else(|| Error::lake(format!("the lake has no {table} table")).with_hint("generate or create the lake first (lakecube generate)"))
    }

    /// Registers `tables` in a plain DataFusion context under their own names, at their latest
    /// version (for one-off reads by ingest and export; the server serves tables through
    /// [`latest::LatestTable`] instead).
    pub async fn register_tables(&self, ctx: &datafusion::prelude::SessionContext, tables: &[&str]) -> Result<()> {
        for name in tables {
            let table = self.require_table(name).await?;
            table.update_datafusion_session(&ctx.state()).map_err(Error::from)?;
            ctx.register_table(*name, table.table_provider().await.map_err(Error::from)?).map_err(Error::from)?;
        }
        Ok(())
    }

    /// The error for a lake without some of its tables (`missing`, of
    /// [`schema::ALL_TABLES`]): one wording wherever a lake is opened (`serve`, `query`,
    /// `Engine::open`), with the command that makes it whole.
    pub fn missing_tables(&self, missing: &[&str]) -> Error {
        let hint = if missing.len() == schema::ALL_TABLES.len() {
            format!("create it with `lakecube generate --lake {}`", self.display())
        } else {
            format!("rebuild it with `lakecube generate --lake {} --overwrite`", self.display())
        };
        Error::lake(format!("the lake at {} has no table {}", self.display(), missing.join(", "))).with_hint(hint)
    }

    /// Which of `tables` exist in the lake.
    pub async fn existing_tables(&self, tables: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for t in tables {
            if self.open_table(t).await?.is_some() {
                out.push(t.to_string());
            }
        }
        Ok(out)
    }

    /// Deletes every object under a table's folder (used by `generate --overwrite`).
    pub async fn delete_table(&self, table: &str) -> Result<()> {
        use futures::TryStreamExt;
        let (store, prefix) = store_for_url(&self.table_url(table))?;
        let prefix = Path::from(format!("{}/", prefix.as_ref().trim_end_matches('/')));
        let files: Vec<_> = store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::lake(format!("cannot list {}: {e}", self.table_url(table))))?;
        for f in files {
            store
                .delete(&f)
                .await
                .map_err(|e| Error::lake(format!("cannot delete {f}: {e}")))?;
        }
        Ok(())
    }

    /// Checks that the lake can be written, by writing and deleting a small object.
    pub async fn check_writable(&self) -> Result<()> {
        let (store, prefix) = store_for_url(&self.root)?;
        let probe = Path::from(format!("{}/.lakecube-write-probe", prefix.as_ref().trim_end_matches('/')));
        store
            .put(&probe, bytes::Bytes::from_static(b"ok").into())
            .await
            .map_err(|e| {
                Error::lake(format!("cannot write to the lake at {}: {}", self.display(), short(&e)))
                    .with_hint(write_hint(&self.root))
            })?;
        let _ = store.delete(&probe).await;
        Ok(())
    }
}

fn short(e: &object_store::Error) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or_default().to_string()
}

fn write_hint(root: &Url) -> &'static str {
    match root.scheme() {
        "s3" => "check AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that the bucket exists",
        _ => "check that the folder exists and that this user may write to it",
    }
}

fn lake_error(lake: &Lake, e: deltalake::DeltaTableError) -> Error {
    let msg = e.to_string();
    let first = msg.lines().next().unwrap_or_default();
    Error::lake(format!("cannot read the lake at {}: {first}", lake.display())).with_hint(write_hint(&lake.root))
}

fn local_url(path: &FsPath, create: bool) -> Result<Url> {
    if !path.exists() {
        if create {
            std::fs::create_dir_all(path).map_err(|e| {
                Error::lake(format!("cannot create the lake folder {}: {e}", path.display()))
                    .with_hint("check the path and this user's permissions")
            })?;
        } else {
            return Err(Error::lake(format!("the lake folder {} does not exist", path.display()))
                .with_hint("run `lakecube generate --lake <path>` first, or point --lake at an existing lake"));
        }
    }
    if !path.is_dir() {
        return Err(Error::lake(format!("the lake location {} is not a folder", path.display())));
    }
    let abs: PathBuf = path.canonicalize()?;
    Url::from_directory_path(&abs)
        .map_err(|_| Error::lake(format!("cannot turn {} into a URL", abs.display())))
}

/// The one in-process store behind every `memory://` lake.
fn memory_store() -> Arc<dyn ObjectStore> {
    static STORE: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    STORE.get_or_init(|| Arc::new(InMemory::new())).clone()
}

/// The root object store for a URL and the path of the URL inside it.
pub fn store_for_url(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let path = Path::from_url_path(url.path())
        .map_err(|e| Error::config(format!("bad path in {url}: {e}")))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "memory" => memory_store(),
        "file" => Arc::new(object_store::local::LocalFileSystem::new()),
        "s3" => s3_store(url, &HashMap::new())?,
        other => return Err(Error::config(format!("unsupported scheme {other}"))),
    };
    Ok((store, path))
}

/// An S3 store for the URL's bucket, configured from `AWS_*` variables plus `options`.
fn s3_store(url: &Url, options: &HashMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
    let bucket = url.host_str().unwrap_or_default();
    // Fail within seconds, not minutes, when the endpoint is down (the default retries for
    // three minutes), while still riding out a brief hiccup.
    let retry = object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    };
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry);
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok();
    if let Some(ep) = endpoint {
        if ep.starts_with("http://") {
            b = b.with_allow_http(true);
        }
        b = b.with_endpoint(ep);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        b = b.with_region("us-east-1");
    }
    for (k, v) in options {
        if let Ok(key) = k.to_ascii_lowercase().parse() {
            b = b.with_config(key, v);
        }
    }
    let s3 = b.build().map_err(|e| {
        Error::config(format!("cannot configure S3 for {url}: {e}"))
            .with_hint("set AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    })?;
    Ok(Arc::new(s3))
}

struct LakeStoreFactory;

impl ObjectStoreFactory for LakeStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = match url.scheme() {
            "s3" => (
                s3_store(url, &config.raw).map_err(|e| deltalake::DeltaTableError::Generic(e.message))?,
                Path::from_url_path(url.path())?,
            ),
            _ => store_for_url(url).map_err(|e| deltalake::DeltaTableError::Generic(e.message))?,
        };
        Ok((store, path))
    }
}

struct LakeLogStoreFactory;

impl LogStoreFactory for LakeLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

/// Registers our object stores with deltalake's global registries (once per process).
fn register_factories() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let stores = object_store_factories();
        let logs = logstore_factories();
        for scheme in ["memory://", "s3://"] {
            let u = Url::parse(scheme).expect("static url");
            stores.insert(u.clone(), Arc::new(LakeStoreFactory));
            logs.insert(u, Arc::new(LakeLogStoreFactory));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_urls_sit_under_the_root() {
        let lake = Lake::open("memory://", false).unwrap();
        assert_eq!(lake.table_url("traffic").as_str(), "memory:///traffic");
        let lake = Lake::open("s3://bucket/some/prefix", false).unwrap();
        assert_eq!(lake.table_url("stores").as_str(), "s3://bucket/some/prefix/stores");
    }

    #[test]
    fn bad_locations_are_explained() {
        let e = Lake::open("ftp://x/y", false).unwrap_err();
        assert!(e.message.contains("ftp://"), "{}", e.message);
        let e = Lake::open("/definitely/not/here/lake", false).unwrap_err();
        assert!(e.message.contains("does not exist"));
        assert!(e.hint.is_some());
    }
}
