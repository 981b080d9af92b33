//! The end-to-end benchmark: lakecube beside DuckDB and PostgreSQL 15 over the same lake, in one
//! run (docs/performance.md explains the figures).
//!
//! Run it with `benches/bench.sh [--preset sf1]`, which installs what it needs, builds lakecube
//! in release mode and generates the lake if absent, then runs this with
//! `cargo bench --bench e2e -- --lake data/sf1 --scale sf1 [--runs N] [--warmup N] [--seconds S]
//! [--queries DIR] [--only TEXT] [--no-postgres]` (`--only`: the queries whose name contains
//! TEXT; `--no-postgres`: DuckDB is the only peer, as at sf10, where loading PostgreSQL and its
//! answers would take hours).
//!
//! What it does:
//! - builds the cube definitions' rollups from scratch (`<lake>/_rollups` is removed first;
//!   `lakecube rollups build`, timed), then starts `target/release/lakecube serve` on the lake
//!   and times the first answer of a cube query after the process starts;
//! - starts a throwaway PostgreSQL 15 cluster, loads the lake's tables into it (the Parquet
//!   files' rows, exported by DuckDB as CSV and read by `COPY`), with indexes on the keys and
//!   on time, and `ANALYZE`;
//! - runs every query of `benches/queries/` (`NAME.sql` against the `retail` cube as a BI tool
//!   writes it, `NAME.star.sql` the same question over the star schema) through tokio-postgres,
//!   with text results (simple query) and binary results (extended query), against lakecube
//!   (with `lakecube.answer_reuse = off`: each run does the question's work), lakecube as
//!   clients get it by default (binary; an answer from rollups is reused while the lake has
//!   not moved), lakecube with `SET lakecube.rollups = off` (binary: the same question from
//!   the lake) and PostgreSQL; DuckDB runs the star-schema SQL in-process
//!   (`benches/e2e/duck.py`), and `NAME.rollup.sql`, where there is one, over the rollup's own
//!   Parquet files (views `rollup_<name>`: a bare engine on the same pre-aggregated rows);
//!   the rollup that answers each question is read from its `EXPLAIN`;
//!   `-- cursor` queries are read as Tableau reads them, `DECLARE` then `FETCH 2048`;
//! - checks that every engine returns the same rows (sorted; numbers to 1e-9 relative) and
//!   exits non-zero, after writing the figures, when one does not;
//! - measures the `SELECT 1` round trip, rows/s streaming all of `traffic` (text and binary),
//!   queries/s of a mixed workload with 1, 8 and 32 clients (with and without answers reused),
//!   the bytes lakecube read from the lake per query (its `EXPLAIN ANALYZE` scan metrics),
//!   lakecube's peak RSS, and the rollups' refresh after a one-day ingest (on a hard-linked
//!   copy of the lake: the door-sensor export of its last day, from a lake generated alike);
//! - prints a Markdown table and writes it, with the JSON figures, to
//!   `benches/results/e2e-<date>-<scale>.{md,json}`.

#[path = "../tests/common/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    lake: PathBuf,
    scale: String,
    runs: usize,
    warmup: usize,
    seconds: u64,
    queries: PathBuf,
    only: Option<String>,
    /// Leave PostgreSQL out (sf10: loading it and its minutes-long answers would take hours).
    no_postgres: bool,
}

fn args() -> Args {
    let mut a = Args { lake: PathBuf::from("data/sf1"), scale: "sf1".into(), runs: 10, warmup: 2, seconds: 10, queries: PathBuf::from("benches/queries"), only: None, no_postgres: false };
    let argv: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--lake" => a.lake = PathBuf::from(value()),
            "--scale" => a.scale = value(),
            "--runs" => a.runs = value().parse().expect("--runs N"),
            "--warmup" => a.warmup = value().parse().expect("--warmup N"),
            "--seconds" => a.seconds = value().parse().expect("--seconds S"),
            "--queries" => a.queries = PathBuf::from(value()),
            "--only" => a.only = Some(value()),
            "--no-postgres" => a.no_postgres = true,
            other => panic!("unknown argument {other}; see the header of benches/e2e.rs"),
        }
    }
    a
}

/// One question: the cube SQL, the star-schema SQL, the same question over a rollup's own
/// files for DuckDB (`NAME.rollup.sql`, if there is one), and whether clients read it by cursor.
struct Query {
    name: String,
    sql: String,
    star: String,
    rollup: Option<String>,
    cursor: bool,
}

fn queries(dir: &Path) -> Vec<Query> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("benches/queries")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql") && !p.to_string_lossy().ends_with(".star.sql") && !p.to_string_lossy().ends_with(".rollup.sql"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let sql = std::fs::read_to_string(&p).unwrap();
            let star = std::fs::read_to_string(p.with_extension("star.sql")).unwrap_or_else(|_| panic!("{} has no .star.sql", p.display()));
            let body = |s: &str| s.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n");
            Query {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                cursor: sql.starts_with("-- cursor"),
                sql: body(&sql),
                star: body(&star),
                rollup: std::fs::read_to_string(p.with_extension("rollup.sql")).ok().map(|r| body(&r)),
            }
        })
        .collect()
}

/// p50, p95 and max of samples in ms.
fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), s[s.len() - 1])
}

/// A query's rows as text (NULL as "NULL"), through the simple-query protocol.
async fn text_rows(c: &Client, sql: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect());
        }
    }
    Ok(rows)
}

/// Tableau's read: a cursor in a transaction, fetched 2,048 rows at a time.
async fn cursor_rows(c: &Client, sql: &str) -> Result<Vec<Vec<String>>> {
    c.simple_query("BEGIN").await?;
    c.simple_query(&format!("DECLARE bench_cursor NO SCROLL CURSOR FOR {sql}")).await?;
    let mut rows = Vec::new();
    loop {
        let got = text_rows(c, "FETCH 2048 FROM bench_cursor").await?;
        if got.is_empty() {
            break;
        }
        rows.extend(got);
    }
    c.simple_query("CLOSE bench_cursor").await?;
    c.simple_query("COMMIT").await?;
    Ok(rows)
}

/// Binary results (the extended protocol, as tokio-postgres, Npgsql and pgjdbc read them).
async fn binary_rows(c: &Client, sql: &str) -> Result<usize> {
    Ok(c.query(sql, &[]).await?.len())
}

struct Timed {
    samples: Vec<f64>,
    rows: usize,
    /// The last run's rows, for the answer check (text modes only).
    answer: Option<Vec<Vec<String>>>,
}

async fn time_query(c: &Client, q: &Query, star: bool, binary: bool, a: &Args) -> Result<Timed> {
    let sql = if star { &q.star } else { &q.sql };
    let mut t = Timed { samples: Vec::new(), rows: 0, answer: None };
    for i in 0..a.warmup + a.runs {
        let start = Instant::now();
        if binary {
            t.rows = binary_rows(c, sql).await?;
        } else {
            let rows = if q.cursor { cursor_rows(c, sql).await? } else { text_rows(c, sql).await? };
            t.rows = rows.len();
            t.answer = Some(rows);
        }
        if i >= a.warmup {
            t.samples.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(t)
}

/// Rows sorted by a canonical form (numbers in scientific notation), so that engines that
/// order ties differently still compare.
fn canonical(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let key = |r: &Vec<String>| r.iter().map(|v| v.parse::<f64>().map(|x| format!("{x:.6e}")).unwrap_or_else(|_| v.clone())).collect::<Vec<_>>();
    let mut rows = rows.to_vec();
    rows.sort_by_key(key);
    rows
}

/// The first difference between two answers, if any.
fn differ(a: &[Vec<String>], b: &[Vec<String>]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} rows against {}", a.len(), b.len()));
    }
    let (a, b) = (canonical(a), canonical(b));
    for (ra, rb) in a.iter().zip(&b) {
        if ra.len() != rb.len() {
            return Some(format!("{ra:?} against {rb:?}"));
        }
        for (x, y) in ra.iter().zip(rb) {
            let same = x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(p), Ok(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()),
                    _ => false,
                };
            if !same {
                return Some(format!("{ra:?} against {rb:?}"));
            }
        }
    }
    None
}

/// lakecube's bytes read from the lake for a query: the sum of the scans' `bytes_scanned`
/// in `EXPLAIN ANALYZE` (DataFusion prints them rounded, e.g. `433.7 K`).
async fn bytes_read(c: &Client, sql: &str) -> Result<u64> {
    let mut total = 0.0;
    for row in text_rows(c, &format!("EXPLAIN ANALYZE {sql}")).await? {
        for cell in row {
            for part in cell.split("bytes_scanned=").skip(1) {
                let figure: String = part.chars().take_while(|ch| !matches!(ch, ',' | ']' | '\n')).collect();
                let mut words = figure.split_whitespace();
                let n: f64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
                let unit = match words.next() {
                    Some("K") => 1e3,
                    Some("M") => 1e6,
                    Some("B") => 1e9,
                    Some("T") => 1e12,
                    _ => 1.0,
                };
                total += n * unit;
            }
        }
    }
    Ok(total as u64)
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// `SELECT 1` round trips (simple query: one round trip each), in ms.
async fn pings(c: &Client, n: usize) -> Result<Vec<f64>> {
    for _ in 0..n / 10 {
        c.simple_query("SELECT 1").await?;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.simple_query("SELECT 1").await?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// Rows/s streaming a whole table, binary (extended protocol) or text (simple query), without
/// holding the rows.
async fn stream(c: &Client, sql: &str, binary: bool) -> Result<(usize, f64)> {
    let t = Instant::now();
    let mut n = 0;
    if binary {
        let rows = c.query_raw(sql, std::iter::empty::<i32>()).await?;
        futures::pin_mut!(rows);
        while let Some(r) = rows.next().await {
            r?;
            n += 1;
        }
    } else {
        let s = c.simple_query_raw(sql).await?;
        futures::pin_mut!(s);
        while let Some(m) = s.next().await {
            if let SimpleQueryMessage::Row(_) = m? {
                n += 1;
            }
        }
    }
    Ok((n, n as f64 / t.elapsed().as_secs_f64()))
}

/// Queries/s of a mixed workload: `clients` connections (each first running `setup`, if
/// any) each running `sqls` in turn (each client from its own offset) for `seconds`, binary
/// results.
async fn throughput(url: &str, setup: Option<&str>, sqls: &[String], clients: usize, seconds: u64) -> Result<(f64, usize)> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = connect(url).await?;
        if let Some(setup) = setup {
            c.simple_query(setup).await?;
        }
        conns.push(c);
    }
    let mut tasks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    for (k, c) in conns.into_iter().enumerate() {
        let sqls = sqls.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut i = k;
            while Instant::now() < deadline {
                c.query(&sqls[i % sqls.len()], &[]).await.map_err(|e| e.to_string())?;
                done += 1;
                i += 1;
            }
            Ok::<usize, String>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?.map_err(|e| format!("a client failed: {e}"))?;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

struct Lakecube {
    child: Child,
    url: String,
    time_to_first_query_ms: f64,
}

impl Lakecube {
    async fn start(lake: &Path) -> Result<Lakecube> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let started = Instant::now();
        let child = Command::new("target/release/lakecube")
            .args(["serve", "--lake", lake.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let url = format!("postgresql://lakecube@127.0.0.1:{port}/lakecube");
        loop {
            if let Ok(c) = connect(&url).await
                && c.simple_query("SELECT SUM(footfall) FROM retail").await.is_ok()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err("lakecube did not answer within 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let time_to_first_query_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(Lakecube { child, url, time_to_first_query_ms })
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    }

    /// Starts a new peak: Linux resets VmHWM to the current RSS when `5` is written to
    /// clear_refs. Whether it could.
    fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }
}

impl Drop for Lakecube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loads the lake into PostgreSQL: DuckDB exports each table's live Parquet rows as CSV, which
/// the server reads with `COPY`; then keys, indexes and statistics.
fn load_postgres(pg: &pg::LocalPostgres, lake: &Path) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("lakecube-bench-csv-").tempdir()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let ok = Command::new("python3").args(["benches/e2e/duck.py", "export", lake.to_str().unwrap(), dir.path().to_str().unwrap()]).status()?;
    if !ok.success() {
        return Err("exporting the lake with DuckDB failed".into());
    }
    let csv = |t: &str| dir.path().join(format!("{t}.csv")).display().to_string();
    pg.psql(&format!(
        "CREATE TABLE stores (store_id int PRIMARY KEY, store_code text NOT NULL UNIQUE, store_name text NOT NULL, city text NOT NULL, \
           region text NOT NULL, country text NOT NULL, store_format text NOT NULL, surface_m2 int NOT NULL, opened_on date NOT NULL, closed_on date);
         CREATE TABLE departments (department_id int PRIMARY KEY, department_code text NOT NULL UNIQUE, department text NOT NULL, department_family text NOT NULL);
         CREATE TABLE traffic (store_id int NOT NULL, department_id int NOT NULL, ts timestamp NOT NULL, footfall int NOT NULL, \
           transactions int NOT NULL, revenue numeric(12,2) NOT NULL, units int NOT NULL);
         COPY stores FROM '{}' (FORMAT csv, HEADER);
         COPY departments FROM '{}' (FORMAT csv, HEADER);
         COPY traffic FROM '{}' (FORMAT csv, HEADER);
         CREATE INDEX ON traffic (ts);
         CREATE INDEX ON traffic (store_id, ts);
         CREATE INDEX ON stores (region);",
        csv("stores"),
        csv("departments"),
        csv("traffic")
    ));
    pg.psql("VACUUM ANALYZE");
    Ok(())
}

/// DuckDB's timings and answers, from benches/e2e/duck.py.
/// DuckDB's times and answers for each `(name, sql)`.
fn duckdb(lake: &Path, qs: &[(String, String)], a: &Args) -> Result<Vec<Value>> {
    let file = tempfile::NamedTempFile::new()?;
    let list: Vec<Value> = qs.iter().map(|(name, sql)| json!({"name": name, "sql": sql})).collect();
    std::fs::write(file.path(), serde_json::to_string(&list)?)?;
    let out = Command::new("python3")
        .args(["benches/e2e/duck.py", "run", lake.to_str().unwrap(), file.path().to_str().unwrap(), &a.warmup.to_string(), &a.runs.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err("DuckDB's run failed".into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())).unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = mem.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    json!({"machine": {"cores": cores, "memory_gib": (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0, "cpu": model, "date": today()}})
}

fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

fn figure(query: &str, engine: &str, scale: &str, samples: &[f64], rows: usize) -> Value {
    let (p50, p95, max) = stats(samples);
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({"query": query, "engine": engine, "scale": scale, "p50_ms": r(p50), "p95_ms": r(p95), "max_ms": r(max), "rows": rows, "runs": samples.len()})
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args();
    let qs: Vec<Query> = queries(&a.queries).into_iter().filter(|q| a.only.as_ref().is_none_or(|o| q.name.contains(o.as_str()))).collect();
    if qs.is_empty() {
        return Err(format!("no query in {} matches", a.queries.display()).into());
    }
    eprintln!("{} queries, lake {}, {} warm-up and {} timed runs each", qs.len(), a.lake.display(), a.warmup, a.runs);
    let lake = a.lake.to_str().unwrap();
    // A cold build: the rollups of an earlier run (or of other definitions) go first.
    let _ = std::fs::remove_dir_all(a.lake.join("_rollups"));
    let t = Instant::now();
    let built = Command::new("target/release/lakecube").args(["rollups", "build", "--lake", lake]).stderr(Stdio::null()).status()?;
    if !built.success() {
        return Err("lakecube rollups build failed".into());
    }
    let rollup_build_s = t.elapsed().as_secs_f64();
    let status = Command::new("target/release/lakecube").args(["rollups", "status", "--lake", lake]).output()?;
    let rollup_status = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("rollups built in {rollup_build_s:.1} s:\n{rollup_status}");
    let lc = Lakecube::start(&a.lake).await?;
    eprintln!("lakecube answered its first query {:.0} ms after starting", lc.time_to_first_query_ms);
    let pg = (!a.no_postgres).then(|| pg::LocalPostgres::start_with("-c shared_buffers=1GB -c work_mem=64MB -c max_parallel_workers_per_gather=2"));
    if let Some(pg) = &pg {
        let t = Instant::now();
        load_postgres(pg, &a.lake)?;
        eprintln!("PostgreSQL 15 loaded in {:.0} s", t.elapsed().as_secs_f64());
    }
    let pg_url = pg.as_ref().map(|p| p.url());
    let pgc = match &pg_url {
        Some(u) => Some(connect(u).await?),
        None => None,
    };
    // Each question's own work: answers are not reused on this connection.
    let lcc = connect(&lc.url).await?;
    lcc.simple_query("SET lakecube.answer_reuse = off").await?;
    // As clients get it by default: a rollup's answer reused while nothing moved.
    let reuse = connect(&lc.url).await?;
    // The same server, answering from the lake only.
    let lake_only = connect(&lc.url).await?;
    lake_only.simple_query("SET lakecube.rollups = off").await?;

    let mut figures: Vec<Value> = Vec::new();
    let mut answers: Vec<(String, &str, Vec<Vec<String>>)> = Vec::new();
    let mut table = vec![
        "| query | rollup | lakecube text | lakecube binary | answer reused, binary | from the lake, binary | PostgreSQL text | PostgreSQL binary | DuckDB | DuckDB over the rollup | lakecube / best peer | rows | lake MB read |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut routed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let duck = duckdb(&a.lake, &qs.iter().map(|q| (q.name.clone(), q.star.clone())).collect::<Vec<_>>(), &a)?;
    let over_rollups: Vec<(String, String)> = qs.iter().filter_map(|q| Some((q.name.clone(), q.rollup.clone()?))).collect();
    let duck_rollups = duckdb(&a.lake, &over_rollups, &a)?;
    for (q, d) in qs.iter().zip(&duck) {
        eprintln!("{}", q.name);
        let mut p50 = std::collections::BTreeMap::new();
        let mut rows = 0;
        let rollup = text_rows(&lcc, &format!("EXPLAIN {}", q.sql))
            .await?
            .into_iter()
            .filter(|r| r[0] == "rollup")
            .map(|r| r[1].split(" (").next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let rollup = if rollup.is_empty() { "none".to_string() } else { rollup };
        routed.insert(q.name.clone(), rollup.clone());
        let mut clients = vec![("lakecube", &lcc, false), ("reused", &reuse, false), ("lake-only", &lake_only, false)];
        if let Some(pgc) = &pgc {
            clients.push(("postgresql", pgc, true));
        }
        for (engine, client, star) in clients {
            for binary in [false, true] {
                if (binary && q.cursor) || (matches!(engine, "lake-only" | "reused") && !binary) {
                    continue;
                }
                let t = time_query(client, q, star, binary, &a).await.map_err(|e| format!("{} on {engine}: {e}", q.name))?;
                let name = format!("{engine} {}", if binary { "binary" } else { "text" });
                figures.push(figure(&q.name, &name, &a.scale, &t.samples, t.rows));
                p50.insert(name, stats(&t.samples).0);
                rows = t.rows;
                if let Some(ans) = t.answer {
                    answers.push((q.name.clone(), engine, ans));
                }
            }
        }
        for (engine, results) in [("duckdb", std::slice::from_ref(d)), ("duckdb-rollup", &duck_rollups[..])] {
            let Some(d) = results.iter().find(|d| d["name"] == q.name.as_str()) else { continue };
            let samples: Vec<f64> = d["times_ms"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let duck_rows: Vec<Vec<String>> = serde_json::from_value(d["rows"].clone())?;
            figures.push(figure(&q.name, engine, &a.scale, &samples, duck_rows.len()));
            p50.insert(engine.into(), stats(&samples).0);
            answers.push((q.name.clone(), engine, duck_rows));
        }
        let bytes = bytes_read(&lcc, &q.sql).await?;
        if let Some(f) = figures.iter_mut().rev().find(|f| f["query"] == q.name.as_str() && f["engine"] == "lakecube text") {
            f["bytes_read"] = json!(bytes);
        }
        let best = |prefix: &str| p50.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let cell = |k: &str| p50.get(k).map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
        // lakecube's own work (answers not reused) against the best peer over the raw files.
        let ratio = best("lakecube") / best("postgresql").min(p50.get("duckdb").copied().unwrap_or(f64::INFINITY));
        table.push(format!(
            "| {} | {rollup} | {} | {} | {} | {} | {} | {} | {} | {} | {ratio:.2} | {rows} | {:.1} |",
            q.name,
            cell("lakecube text"),
            cell("lakecube binary"),
            cell("reused binary"),
            cell("lake-only binary"),
            cell("postgresql text"),
            cell("postgresql binary"),
            cell("duckdb"),
            cell("duckdb-rollup"),
            bytes as f64 / 1e6
        ));
    }

    // Answers: lakecube's against PostgreSQL's and DuckDB's (over the raw files and over the
    // rollup's files).
    let mut wrong = Vec::new();
    for q in &qs {
        let of = |e: &str| answers.iter().find(|(n, en, _)| *n == q.name && *en == e).map(|(_, _, r)| r);
        let mine = of("lakecube").unwrap();
        for peer in ["postgresql", "duckdb", "duckdb-rollup"] {
            if let Some(theirs) = of(peer)
                && let Some(d) = differ(mine, theirs)
            {
                wrong.push(format!("{}: lakecube and {peer} differ: {d}", q.name));
            }
        }
    }

    let mut extra = vec!["| measure | lakecube | PostgreSQL 15 | ratio |".to_string(), "|---|---|---|---|".to_string()];
    let ratio = |l: f64, p: Option<f64>| p.map(|p| format!("{p:.3} | {:.2}", l / p)).unwrap_or_else(|| "– | –".into());
    let lp = pings(&lcc, 2000).await?;
    figures.push(figure("select_1", "lakecube text", &a.scale, &lp, 1));
    let pp = match &pgc {
        Some(pgc) => {
            let pp = pings(pgc, 2000).await?;
            figures.push(figure("select_1", "postgresql text", &a.scale, &pp, 1));
            Some(stats(&pp).0)
        }
        None => None,
    };
    extra.push(format!("| `SELECT 1` round trip, p50 ms | {:.3} | {} |", stats(&lp).0, ratio(stats(&lp).0, pp)));
    for binary in [false, true] {
        let mode = if binary { "binary" } else { "text" };
        let cols = "store_id, department_id, ts, footfall, transactions, revenue, units";
        let (ln, lr) = stream(&lcc, &format!("SELECT {cols} FROM lake.traffic"), binary).await?;
        let mut results = vec![("lakecube", ln, lr)];
        if let Some(pgc) = &pgc {
            let (pn, pr) = stream(pgc, &format!("SELECT {cols} FROM traffic"), binary).await?;
            if ln != pn {
                wrong.push(format!("streaming traffic: lakecube sent {ln} rows, PostgreSQL {pn}"));
            }
            results.push(("postgresql", pn, pr));
        }
        for (engine, n, rate) in &results {
            let secs = *n as f64 / rate * 1e3;
            let mut f = figure(&format!("stream_traffic_{mode}"), &format!("{engine} {mode}"), &a.scale, &[secs], *n);
            f["rows_per_s"] = json!(rate.round());
            figures.push(f);
        }
        let pr = results.get(1).map(|r| r.2);
        extra.push(format!(
            "| streaming all of traffic ({ln} rows, {mode}), rows/s | {lr:.0} | {} |",
            pr.map(|p| format!("{p:.0} | {:.2}", lr / p)).unwrap_or_else(|| "– | –".into())
        ));
    }
    let mixed: Vec<(String, String)> = qs
        .iter()
        .filter(|q| !q.cursor && !q.name.contains("export") && !q.name.contains("ungrouped"))
        .map(|q| (q.sql.clone(), q.star.clone()))
        .collect();
    let hits = qs.iter().filter(|q| mixed.iter().any(|m| m.0 == q.sql) && routed.get(&q.name).is_some_and(|r| !r.starts_with("none"))).count();
    extra.push(format!("| mixed workload questions answered from a rollup | {hits} of {} | | |", mixed.len()));
    extra.push(format!("| rollups build (all partitions, `lakecube rollups build`), s | {rollup_build_s:.1} | | |"));
    let cube_sqls: Vec<String> = mixed.iter().map(|m| m.0.clone()).collect();
    let star_sqls: Vec<String> = mixed.iter().map(|m| m.1.clone()).collect();
    // The peak so far includes the raw lake scans above (09, 13); the mix's own is measured
    // from here.
    let rss_before_mix = lc.peak_rss_mib();
    let mix_peak_measured = lc.reset_peak_rss();
    for clients in [1, 8, 32] {
        for (label, setup) in [("", None), (", answers not reused", Some("SET lakecube.answer_reuse = off"))] {
            let (lq, ln) = throughput(&lc.url, setup, &cube_sqls, clients, a.seconds).await?;
            let engine = if setup.is_some() { "lakecube binary, answers not reused" } else { "lakecube binary" };
            figures.push(json!({"query": format!("mixed_{clients}_clients"), "engine": engine, "scale": a.scale,
                "queries_per_s": (lq * 100.0).round() / 100.0, "runs": ln, "clients": clients, "seconds": a.seconds}));
            // PostgreSQL has no such setting: measured once, beside lakecube's default.
            let pq = match (&pg_url, setup) {
                (Some(u), None) => {
                    let (pq, pn) = throughput(u, None, &star_sqls, clients, a.seconds).await?;
                    figures.push(json!({"query": format!("mixed_{clients}_clients"), "engine": "postgresql binary", "scale": a.scale,
                        "queries_per_s": (pq * 100.0).round() / 100.0, "runs": pn, "clients": clients, "seconds": a.seconds}));
                    Some(pq)
                }
                _ => None,
            };
            extra.push(format!(
                "| mixed workload ({} queries{label}), {clients} clients, queries/s | {lq:.1} | {} |",
                mixed.len(),
                pq.map(|p| format!("{p:.1} | {:.2}", lq / p)).unwrap_or_else(|| "– | –".into())
            ));
        }
    }
    let mix_rss = lc.peak_rss_mib();
    let rss = rss_before_mix.max(mix_rss);
    extra.push(format!("| lakecube peak RSS, MiB | {rss:.0} | | |"));
    if mix_peak_measured {
        extra.push(format!("| lakecube peak RSS during the mixed workload, MiB | {mix_rss:.0} | | |"));
        figures.push(json!({"query": "mixed_workload", "engine": "lakecube", "scale": a.scale, "peak_rss_mib": mix_rss.round()}));
    }
    extra.push(format!("| lakecube time to first query after start, ms | {:.0} | | |", lc.time_to_first_query_ms));
    figures.push(json!({"query": "server", "engine": "lakecube", "scale": a.scale, "peak_rss_mib": rss.round(), "time_to_first_query_ms": lc.time_to_first_query_ms.round()}));
    drop(lc);
    let (refresh_s, refreshed) = refresh_after_one_day(&a)?;
    extra.push(format!("| rollups refresh after a one-day ingest, s (partitions rebuilt) | {refresh_s:.1} ({refreshed}) | | |"));
    figures.push(json!({"query": "rollups_refresh_one_day", "engine": "lakecube", "scale": a.scale, "seconds": (refresh_s * 100.0).round() / 100.0, "partitions": refreshed}));
    let m = machine();
    figures.push(m.clone());

    let facts = format!(
        "{} cores, {} GiB, {}; lake {} ({}), {} warm-up and {} timed runs per query; p50 in ms.",
        m["machine"]["cores"], m["machine"]["memory_gib"], m["machine"]["cpu"].as_str().unwrap_or(""), a.lake.display(), a.scale, a.warmup, a.runs
    );
    let report = format!("{facts}\n\n{}\n\n{}\n\nRollups (`lakecube rollups status`):\n\n```text\n{rollup_status}```\n", table.join("\n"), extra.join("\n"));
    println!("{report}");
    let stem = format!("benches/results/e2e-{}-{}", today(), a.scale);
    std::fs::write(format!("{stem}.md"), &report)?;
    std::fs::write(format!("{stem}.json"), serde_json::to_string_pretty(&figures)?)?;
    eprintln!("written {stem}.md and {stem}.json");
    if !wrong.is_empty() {
        for w in &wrong {
            eprintln!("WRONG ANSWER: {w}");
        }
        return Err(format!("{} answers differ between engines", wrong.len()).into());
    }
    Ok(())
}

/// The incremental refresh after a one-day ingest: on a copy of the lake (hard links: Delta
/// never rewrites a file), the door sensors' export of the lake's last day (from a lake
/// generated alike) is ingested, then `lakecube rollups build` times what it rebuilds.
/// Returns the seconds and the partitions rebuilt.
fn refresh_after_one_day(a: &Args) -> Result<(f64, usize)> {
    let work = tempfile::tempdir()?;
    let copy = work.path().join("lake");
    let raw = work.path().join("raw");
    let ok = |s: std::process::ExitStatus, what: &str| if s.success() { Ok(()) } else { Err(format!("{what} failed")) };
    ok(Command::new("cp").args(["-al", a.lake.to_str().unwrap(), copy.to_str().unwrap()]).status()?, "cp -al")?;
    let twin = work.path().join("twin");
    ok(
        Command::new("target/release/lakecube")
            .args(["generate", "--lake", twin.to_str().unwrap(), "--preset", &a.scale, "--raw", raw.to_str().unwrap(), "--raw-days", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?,
        "lakecube generate --raw",
    )?;
    let file = raw.join("sensors_utf8.csv");
    ok(
        Command::new("target/release/lakecube")
            .args(["ingest", "door_sensors", "--file", file.to_str().unwrap(), "--lake", copy.to_str().unwrap(), "--max-reject-share", "0.5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?,
        "lakecube ingest",
    )?;
    let t = Instant::now();
    let out = Command::new("target/release/lakecube").args(["rollups", "build", "--lake", copy.to_str().unwrap()]).output()?;
    ok(out.status, "lakecube rollups build (refresh)")?;
    let secs = t.elapsed().as_secs_f64();
    // Its log: "<rollup>: N partition(s) built in …".
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let rebuilt = text.lines().filter_map(|l| l.split(": ").nth(1)?.split(" partition(s) built").next()?.parse::<usize>().ok()).sum();
    Ok((secs, rebuilt))
}
