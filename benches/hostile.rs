//! The hostile-mix benchmark: peak memory and a dashboard's latency while hostile clients
//! try to exhaust the server, with the memory pool bounded and, for comparison, unbounded
//! (docs/performance.md).
//!
//! `cargo bench --bench hostile -- [--lake data/demo] [--bin target/release/lakecube]
//! [--memory-limit 2GB] [--seconds 20] [--hostile 8] [--timeout 8]`
//!
//! For each setting it starts `lakecube serve` on the lake, then for `--seconds`:
//! - `--hostile` clients loop over five hostile statements (a sort over a cross join, a
//!   group-by with millions of groups, two aggregates that cannot spill over joins, `FETCH
//!   ALL` of a cross join through a cursor), each
//!   under the session's `statement_timeout` (`--timeout`, 8 s: so the unbounded run ends);
//! - one dashboard client runs a grouped cube query over and over, timing each answer and
//!   counting its errors;
//! - the server's resident memory is sampled every 50 ms from /proc.
//!
//! The settings, side by side in one run: the dashboard alone (no hostile clients, the
//! baseline); the pool at `--memory-limit` with CPU priority (heavy statements on the
//! background pool, the default); the same pool with `--background-rows off` (every
//! statement on one runtime); and an unbounded pool (1TB), with priority.
//!
//! It prints one Markdown row per setting: peak RSS, the hostile statements' outcomes by
//! SQLSTATE, and the dashboard's answers, errors, p50 and p99. Bounded requests only, on
//! loopback, stopping by themselves.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    lake: String,
    bin: String,
    memory_limit: String,
    seconds: u64,
    hostile: usize,
    /// The hostile sessions' statement_timeout, in seconds.
    timeout: u64,
}

fn args() -> Args {
    let mut a = Args {
        lake: "data/demo".into(),
        bin: "target/release/lakecube".into(),
        memory_limit: "2GB".into(),
        seconds: 20,
        hostile: 8,
        timeout: 8,
    };
    let argv: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--lake" => a.lake = value(),
            "--bin" => a.bin = value(),
            "--memory-limit" => a.memory_limit = value(),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--hostile" => a.hostile = value().parse().expect("--hostile N"),
            "--timeout" => a.timeout = value().parse().expect("--timeout SECONDS"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

const HOSTILE: &[&str] = &[
    "SELECT a.ts, b.footfall FROM lake.traffic a, lake.traffic b ORDER BY a.footfall * b.footfall DESC, a.ts, b.ts LIMIT 10 OFFSET 1000000",
    "SELECT a.ts, b.store_id, count(*) FROM lake.traffic a, lake.stores b GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
    "SELECT array_agg(a.ts) FROM lake.traffic a, lake.traffic b",
    "SELECT string_agg(CAST(a.ts AS TEXT), ',') FROM lake.traffic a, lake.stores b",
];
const CURSOR: &str = "BEGIN; DECLARE h CURSOR FOR SELECT a.ts, b.ts FROM lake.traffic a, lake.traffic b; FETCH ALL FROM h";
const DASHBOARD: &str = "SELECT region, department, SUM(footfall) AS footfall, SUM(conversion) AS conversion FROM retail WHERE period >= '2025-06-01' AND period < '2025-07-01' GROUP BY 1, 2 ORDER BY 1, 2";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server setting.
struct Setting {
    memory_limit: String,
    /// `--background-rows` (None: the server's default).
    background_rows: Option<&'static str>,
    /// Hostile clients beside the dashboard.
    hostile: usize,
}

fn start(a: &Args, setting: &Setting) -> Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut command = Command::new(&a.bin);
    command.args(["serve", "--lake", &a.lake, "--listen", &format!("127.0.0.1:{port}"), "--memory-limit", &setting.memory_limit]);
    if let Some(rows) = setting.background_rows {
        command.args(["--background-rows", rows]);
    }
    let child = command
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server { child, port })
}

async fn connect(port: u16) -> Result<Client> {
    for _ in 0..300 {
        if let Ok((client, conn)) = tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=lakecube dbname=lakecube"), NoTls).await {
            tokio::spawn(conn);
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the server did not start".into())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))))
        .unwrap_or(0)
}

struct Outcome {
    peak_rss_mib: f64,
    hostile: BTreeMap<String, u64>,
    answers: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    alive: bool,
}

async fn measure(a: &Args, setting: &Setting) -> Result<Outcome> {
    let server = start(a, setting)?;
    let dashboard = connect(server.port).await?;
    dashboard.simple_query(DASHBOARD).await?; // warm: the plan cache and the lake's metadata
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Default::default();
    let mut hostile = Vec::new();
    for i in 0..setting.hostile {
        let (stop, outcomes, port, timeout) = (stop.clone(), outcomes.clone(), server.port, a.timeout);
        hostile.push(tokio::spawn(async move {
            let Ok(client) = connect(port).await else { return };
            // Short enough that the unbounded run cannot take the machine's memory, long
            // enough for the pool to matter; the dashboard has no timeout, as dashboards do.
            let _ = client.batch_execute(&format!("SET statement_timeout = '{timeout}s'")).await;
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let sql = if n % 5 == 4 { CURSOR } else { HOSTILE[n % 4] };
                let code = match client.batch_execute(sql).await {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| "connection lost".into()),
                };
                let _ = client.batch_execute("ROLLBACK").await;
                *outcomes.lock().unwrap().entry(code).or_default() += 1;
                n += 1;
            }
        }));
    }
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), server.child.id());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let (mut times, mut errors) = (Vec::new(), 0);
    while Instant::now() < end {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), dashboard.simple_query(DASHBOARD)).await {
            Ok(Ok(_)) => times.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => errors += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    // The server is up if a new client gets an answer, with the hostile statements still
    // running (the dashboard's own connection may still be busy with a late answer).
    let alive = tokio::time::timeout(Duration::from_secs(60), async {
        let c = connect(server.port).await.ok()?;
        c.simple_query("SELECT 1").await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    for h in hostile {
        h.abort();
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times.get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);
    let hostile = outcomes.lock().unwrap().clone();
    Ok(Outcome {
        peak_rss_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        hostile,
        answers: times.len(),
        errors,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        alive,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args();
    if !std::path::Path::new(&a.bin).exists() {
        return Err(format!("{} is missing: build it (cargo build --release) or pass --bin", a.bin).into());
    }
    println!("hostile mix: {} hostile clients + 1 dashboard, {} s per setting, lake {}, {}", a.hostile, a.seconds, a.lake, a.bin);
    println!();
    println!("| memory_limit | background_rows | hostile clients | peak RSS (MiB) | hostile statements by outcome | dashboard answers | dashboard errors | p50 (ms) | p99 (ms) | server up after |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let setting = |memory_limit: &str, background_rows, hostile| Setting { memory_limit: memory_limit.to_string(), background_rows, hostile };
    let settings = [
        setting(&a.memory_limit, None, 0),
        setting(&a.memory_limit, None, a.hostile),
        setting(&a.memory_limit, Some("off"), a.hostile),
        // "unbounded": a pool larger than the machine, i.e. DataFusion's behaviour without one.
        setting("1TB", None, a.hostile),
    ];
    for s in &settings {
        let o = measure(&a, s).await?;
        let hostile: Vec<String> = o.hostile.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {} |",
            s.memory_limit,
            s.background_rows.unwrap_or("default"),
            s.hostile,
            o.peak_rss_mib,
            if hostile.is_empty() { "—".to_string() } else { hostile.join(", ") },
            o.answers,
            o.errors,
            o.p50_ms,
            o.p99_ms,
            if o.alive { "yes" } else { "no" }
        );
    }
    Ok(())
}
