//! Shared test support: lakes generated once per test process, an in-process server on a free
//! port, and the `lakecube` and `psql` binaries.

#![allow(dead_code)]

pub mod pg;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use lakecube::datagen::{self, Params, Preset};
use lakecube::engine::Engine;
use lakecube::frontend::server::{Limits, run};
use lakecube::storage::Lake;
use tokio::sync::oneshot;

/// This test process's scratch root: `<target>/tmp/scratch-<pid>`. A static is never dropped,
/// so a `TempDir` would leave every run's lakes behind in `/tmp`; instead each run removes the
/// roots of earlier runs whose process is gone (a concurrent run's root is kept).
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("scratch-") else { continue };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base.join(format!("scratch-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("scratch root");
        root
    })
}

/// A folder of this name under the scratch root.
fn scratch(name: &str) -> PathBuf {
    let p = scratch_root().join(name);
    std::fs::create_dir_all(&p).expect("scratch dir");
    p
}

/// Generates a lake once per test process (with a blocking runtime of its own, so any test
/// flavor can call it).
pub fn lake(preset: Preset) -> PathBuf {
    static LAKES: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let map = LAKES.get_or_init(Default::default);
    let mut guard = map.lock().unwrap();
    let key = format!("{preset:?}");
    if let Some(p) = guard.get(&key) {
        return p.clone();
    }
    let dir = scratch(&format!("lake-{key}"));
    generate_into(&dir, &preset.params());
    guard.insert(key, dir.clone());
    dir
}

pub fn generate_into(dir: &Path, p: &Params) {
    let dir = dir.to_path_buf();
    let p = p.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let lake = Lake::open(dir.to_str().unwrap(), true).unwrap();
            datagen::generate(&lake, &p, datagen::Options::default()).await.unwrap();
        })
    })
    .join()
    .unwrap();
}

/// A new empty folder, never handed out before in this process (its name starts with `name`).
pub fn fresh_dir(name: &str) -> PathBuf {
    tempfile::Builder::new().prefix(&format!("{name}-")).tempdir_in(scratch_root()).expect("scratch dir").keep()
}

/// A server running in this process.
pub struct TestServer {
    pub port: u16,
    /// The server's count of failed statements ("errors in the server log").
    pub failure_log: std::sync::Arc<lakecube::telemetry::RecentFailures>,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<lakecube::error::Result<()>>,
}

impl TestServer {
    pub async fn start(lake_dir: &Path, max_connections: usize) -> TestServer {
        Self::start_secured(lake_dir, max_connections, Default::default()).await
    }

    /// A server with TLS and/or users.
    pub async fn start_secured(lake_dir: &Path, max_connections: usize, security: lakecube::frontend::server::Security) -> TestServer {
        let limits = Limits { max_connections, shutdown_grace: Duration::from_secs(5), ..Default::default() };
        Self::start_with(lake_dir, limits, security, lakecube::engine::Options::default()).await
    }

    /// A server with these limits, security and engine options.
    pub async fn start_with(
        lake_dir: &Path,
        mut limits: Limits,
        security: lakecube::frontend::server::Security,
        options: lakecube::engine::Options,
    ) -> TestServer {
        let lake = Lake::open(lake_dir.to_str().unwrap(), false).unwrap();
        let model = lakecube::model::load_dir(std::path::Path::new("cube-defs")).unwrap();
        let engine = Engine::open_with(lake, Some(&model), options).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = oneshot::channel::<()>();
        let failure_log = limits.failures.clone();
        limits.shutdown_grace = Duration::from_secs(5);
        let done = tokio::spawn(run(listener, engine, limits, security, async move {
            let _ = rx.await;
        }));
        TestServer { port, failure_log, stop: Some(tx), done }
    }

    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=lakecube dbname=lakecube", self.port)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// The statements that failed on this server, as `SQLSTATE: sql`.
    pub fn failures(&self) -> Vec<String> {
        self.failure_log.recent_failures().into_iter().map(|f| format!("{}: {} ({})", f.sqlstate, f.sql, f.message)).collect()
    }

    /// Stops the server after checking that the statements that failed on it are exactly the
    /// expected ones (their SQLSTATEs, in order): a client test's "no error in the server log".
    pub async fn stop_expecting_failures(self, sqlstates: &[&str]) {
        let got: Vec<String> = self.failure_log.recent_failures().into_iter().map(|f| f.sqlstate).collect();
        assert_eq!(got, sqlstates, "statements that failed on the server: {:#?}", self.failures());
        self.stop().await;
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.done).await.unwrap().unwrap().unwrap();
    }
}

/// Runs the `lakecube` binary.
pub fn lakecube(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lakecube"));
    c.args(args);
    for k in ["LAKECUBE_LAKE", "LAKECUBE_LISTEN", "LAKECUBE_CONFIG", "LAKECUBE_CUBE_DEFS"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lakecube")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lakecube query --format csv` for a lake folder.
pub fn query_csv(lake: &Path, sql: &str) -> String {
    let o = lakecube(&["query", "--format", "csv", "--lake", lake.to_str().unwrap(), sql], &[]);
    assert!(o.status.success(), "lakecube query failed: {}", stderr(&o));
    stdout(&o)
}

/// The real `psql`, with CSV output.
pub async fn psql_csv(port: u16, sql: &str) -> Output {
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "--csv", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "lakecube", "-d", "lakecube", "-c", &sql])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql must be installed (scripts/test.sh installs it)")
    })
    .await
    .unwrap()
}

/// Every cell of a batch as text (NULL as "NULL").
pub fn batch_rows(b: &datafusion::arrow::record_batch::RecordBatch) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::array_value_to_string;
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| if c.is_null(r) { "NULL".to_string() } else { array_value_to_string(c, r).unwrap() })
                .collect()
        })
        .collect()
}

/// Runs SQL in-process and returns every cell as text (NULL as "NULL").
pub async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    use futures::StreamExt;
    let (_, mut stream) = engine.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {}", e.message));
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.extend(batch_rows(&b.unwrap()));
    }
    out
}

/// The single value of a one-row, one-column query, parsed.
pub async fn scalar<T: std::str::FromStr>(engine: &Engine, sql: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let r = rows(engine, sql).await;
    assert_eq!(r.len(), 1, "{sql}: expected one row, got {r:?}");
    r[0][0].parse().unwrap_or_else(|e| panic!("{sql}: cannot parse {:?}: {e:?}", r[0][0]))
}

pub async fn engine(lake_dir: &Path) -> Engine {
    engine_with(lake_dir, lakecube::engine::Options::default()).await
}

/// [`engine`] with these options.
pub async fn engine_with(lake_dir: &Path, options: lakecube::engine::Options) -> Engine {
    let model = lakecube::model::load_dir(std::path::Path::new("cube-defs")).unwrap();
    Engine::open_with(Lake::open(lake_dir.to_str().unwrap(), false).unwrap(), Some(&model), options).await.unwrap()
}

/// A PostgreSQL `numeric` read in binary (as Npgsql and tokio-postgres read it), kept as the
/// decimal text PostgreSQL would print, so tests compare it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numeric(pub String);

impl<'a> tokio_postgres::types::FromSql<'a> for Numeric {
    fn from_sql(_: &tokio_postgres::types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
            Ok(i16::from_be_bytes(raw.get(i..i + 2).ok_or("short numeric")?.try_into()?))
        };
        let (ndigits, weight, sign, dscale) = (word(0)? as usize, word(2)? as i32, word(4)? as u16, word(6)? as usize);
        if sign == 0xC000 {
            return Ok(Numeric("NaN".into()));
        }
        let digits: Vec<i16> = (0..ndigits).map(|k| word(8 + 2 * k)).collect::<Result<_, _>>()?;
        let mut int = String::new();
        for w in 0..=weight.max(0) {
            let d = if w <= weight { digits.get(w as usize).copied().unwrap_or(0) } else { 0 };
            int.push_str(&if int.is_empty() { d.to_string() } else { format!("{d:04}") });
        }
        if weight < 0 {
            int = "0".into();
        }
        let mut frac = String::new();
        for k in (weight + 1)..(weight + 1 + dscale.div_ceil(4) as i32) {
            let d = if k >= 0 { digits.get(k as usize).copied().unwrap_or(0) } else { 0 };
            frac.push_str(&format!("{d:04}"));
        }
        frac.truncate(dscale);
        let sign = if sign == 0x4000 { "-" } else { "" };
        Ok(Numeric(if dscale > 0 { format!("{sign}{int}.{frac}") } else { format!("{sign}{int}") }))
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::NUMERIC
    }
}

pub use pg::LocalPostgres;
