//! Rollups: random cube queries answered with rollups on and off must agree, before and after
//! an ingest makes partitions stale, and after the refresh catches up; the benchmark's BI
//! statements are served by the rollup meant for them.
//!
//! `LAKECUBE_ROLLUP_QUERIES=5000 cargo test --test integration rollups::` runs more random
//! queries (the suite runs a bounded number); `LAKECUBE_ROLLUP_SEED` picks another seed.

use std::path::Path;

use futures::StreamExt;
use lakecube::engine::Engine;
use lakecube::pg::settings::SessionInfo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::*;

/// Cube queries of every shape the rewrite and routing know, drawn at random (the access
/// tests draw from it too).
pub(crate) struct Generator {
    pub(crate) rng: StdRng,
}

const DIMENSIONS: &[&str] = &["region", "country", "store", "store_format", "city", "department", "department_family", "store_code"];
const TIMES: &[&str] = &[
    "date_trunc('day', period)",
    "date_trunc('week', period)",
    "date_trunc('month', period)",
    "date_trunc('quarter', period)",
    "date_trunc('year', period)",
    "CAST(DATE_TRUNC('MONTH', period) AS DATE)",
    "EXTRACT(HOUR FROM period)",
    "EXTRACT(DOW FROM period)",
    "EXTRACT(MONTH FROM period)",
    "EXTRACT(YEAR FROM period)",
    "CAST(period AS DATE)",
    "period",
];
/// (measure, the wrappers that apply to it).
const MEASURES: &[(&str, &[&str])] = &[
    ("footfall", &["SUM", "MEASURE"]),
    ("transactions", &["SUM", "MEASURE"]),
    ("revenue", &["SUM", "MEASURE"]),
    ("units", &["SUM"]),
    ("conversion", &["SUM", "AVG", "MEASURE"]),
    ("average_basket", &["AVG", "MEASURE"]),
    ("sales_per_visitor", &["SUM"]),
    ("units_per_transaction", &["MEASURE"]),
    ("store_count", &["COUNT(DISTINCT", "MEASURE"]),
    ("trading_hours", &["COUNT(DISTINCT", "MEASURE"]),
];
const FILTERS: &[&str] = &[
    "period >= '2025-01-01'",
    "period < '2025-02-01'",
    "period >= '2024-12-01' AND period < '2025-03-01'",
    "period >= '2025-01-15'",
    "period BETWEEN '2024-12-01' AND '2025-01-31'",
    "EXTRACT(YEAR FROM period) = 2025",
    "date_trunc('month', period) = '2025-01-01'",
    "region IN ('Bretagne', 'Île-de-France', 'Flandre')",
    "department = 'Shoes'",
    "store_format <> 'mall'",
    "EXTRACT(DOW FROM period) IN (0, 6)",
];

impl Generator {
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.random_range(0..xs.len())]
    }

    pub(crate) fn query(&mut self) -> String {
        let mut groups: Vec<String> = Vec::new();
        for _ in 0..self.rng.random_range(0..3) {
            let d = self.pick(DIMENSIONS).to_string();
            if !groups.contains(&d) {
                groups.push(d);
            }
        }
        if self.rng.random_bool(0.6) {
            groups.push(self.pick(TIMES).to_string());
        }
        let mut select: Vec<String> = groups.iter().enumerate().map(|(i, g)| format!("{g} AS g{i}")).collect();
        for i in 0..self.rng.random_range(1..4) {
            let (m, wrappers) = *self.pick(MEASURES);
            let w = *self.pick(wrappers);
            let call = if w == "COUNT(DISTINCT" { format!("COUNT(DISTINCT {m})") } else { format!("{w}({m})") };
            select.push(format!("{call} AS m{i}"));
        }
        let mut sql = format!("SELECT {} FROM retail", select.join(", "));
        let filters: Vec<&str> = (0..self.rng.random_range(0..3)).map(|_| *self.pick(FILTERS)).collect();
        if !filters.is_empty() {
            sql.push_str(&format!(" WHERE {}", filters.join(" AND ")));
        }
        if !groups.is_empty() {
            let keys: Vec<String> = (1..=groups.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
            if self.rng.random_bool(0.2) {
                sql.push_str(" HAVING SUM(footfall) > 100");
            }
            if self.rng.random_bool(0.3) {
                sql.push_str(&format!(" ORDER BY {} LIMIT {}", keys.join(", "), self.rng.random_range(1..20)));
            }
        }
        sql
    }
}

/// A statement's rows (sorted, as text) and the rollups that answered it.
async fn answer(engine: &Engine, sql: &str, rollups: bool) -> (Vec<Vec<String>>, Vec<String>) {
    let mut session = SessionInfo::default();
    session.settings.set("lakecube.rollups", if rollups { "on" } else { "off" }).unwrap();
    let planned = engine.plan_sql(sql, &session).await.unwrap_or_else(|e| panic!("{sql}: {}", e.message)).expect("a statement");
    let used = planned.rollups.clone();
    let (_, mut stream) = engine.execute_planned(planned).await.unwrap_or_else(|e| panic!("{sql}: {}", e.message));
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        out.extend(batch_rows(&b.unwrap_or_else(|e| panic!("{sql}: {e}"))));
    }
    out.sort();
    (out, used)
}

/// Whether two cells are the same answer: equal, or numbers within 1e-9 (ratios are summed
/// in another order from a rollup).
pub(crate) fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// What EXPLAIN says of a statement's routing (its `rollup` row).
async fn explained_route(engine: &Engine, sql: &str) -> String {
    let text = rows(engine, &format!("EXPLAIN {sql}")).await;
    text.iter().find(|r| r[0] == "rollup").map(|r| r[1].clone()).unwrap_or_default()
}

/// Runs `n` random queries both ways; returns how many a rollup answered.
async fn differential(engine: &Engine, seed: u64, n: usize) -> usize {
    let mut g = Generator { rng: StdRng::seed_from_u64(seed) };
    let mut routed = 0;
    for i in 0..n {
        let sql = g.query();
        let (on, used) = answer(engine, &sql, true).await;
        let (off, none) = answer(engine, &sql, false).await;
        assert!(none.is_empty(), "{sql}: rollups were used with lakecube.rollups = off");
        routed += usize::from(!used.is_empty());
        // Every ORDER BY is over all group keys, so even a LIMIT keeps the same rows.
        assert_eq!(on.len(), off.len(), "query {i} (seed {seed}): {sql}\nrollups {used:?}\non:  {on:?}\noff: {off:?}");
        for (a, b) in on.iter().zip(&off) {
            assert!(a.iter().zip(b).all(|(x, y)| same(x, y)), "query {i} (seed {seed}): {sql}\nrollups {used:?}\non:  {a:?}\noff: {b:?}");
        }
    }
    routed
}

async fn build_all(engine: &Engine) -> usize {
    let mut n = 0;
    for def in engine.rollups().defs().to_vec() {
        n += engine.rollups().refresh(engine.context(), &def, false, &|_, _, _| {}).await.unwrap_or_else(|e| panic!("{}: {}", def.id, e.message)).len();
    }
    n
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A lake over a year boundary (5 months, 4 stores), with raw exports of its last 2 days.
fn lake_with_exports(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = fresh_dir(name);
    let raw = fresh_dir(&format!("{name}-raw"));
    let o = lakecube(
        &["generate", "--lake", dir.to_str().unwrap(), "--preset", "tiny", "--stores", "4", "--departments", "3", "--from", "2024-11-01", "--to", "2025-03-31", "--raw", raw.to_str().unwrap(), "--raw-days", "2"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, raw)
}

fn ingest(lake: &Path, raw: &Path) {
    let file = raw.join("sensors_utf8.csv");
    let o = lakecube(&["ingest", "door_sensors", "--file", file.to_str().unwrap(), "--lake", lake.to_str().unwrap(), "--max-reject-share", "0.5"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn rollup_answers_equal_the_lake_s_before_and_after_an_ingest() {
    let (dir, raw) = lake_with_exports("rollups-differential");
    let engine = engine(&dir).await;
    let seed = env_number("LAKECUBE_ROLLUP_SEED", 16);
    let n = env_number("LAKECUBE_ROLLUP_QUERIES", 100) as usize;
    // Not built yet: nothing is answered from a rollup.
    assert_eq!(differential(&engine, seed, 10).await, 0);
    let built = build_all(&engine).await;
    assert!(built >= 3, "partitions built: {built}");
    let routed = differential(&engine, seed, n).await;
    assert!(routed * 3 >= n, "only {routed} of {n} random queries were answered from a rollup");
    // A dashboard's statement, answered twice: the second time from the rows kept with its
    // plan (lakecube.answer_reuse), until the ingest below moves the lake.
    let dashboard = "SELECT region, date_trunc('month', period) AS m, SUM(footfall), MEASURE(store_count) FROM retail GROUP BY 1, 2";
    let (first, used) = answer(&engine, dashboard, true).await;
    assert!(!used.is_empty());
    let mut session = SessionInfo::default();
    session.settings.set("lakecube.rollups", "on").unwrap();
    let planned = engine.plan_sql(dashboard, &session).await.unwrap().unwrap();
    assert!(planned.constant.as_ref().is_some_and(|c| c.stream().is_some()), "the answer is kept");
    assert_eq!(answer(&engine, dashboard, true).await.0, first);

    // An ingest adds counts to the last days: their partitions are behind the lake, and are
    // answered from it, merged with the current partitions.
    ingest(&dir, &raw);
    let status = engine.rollups().status().await.unwrap();
    assert!(status.iter().all(|s| s.stale == 1), "{status:?}");
    let (after, _) = answer(&engine, dashboard, true).await;
    assert_ne!(after, first, "the ingest changed the answer");
    let (lake, _) = answer(&engine, dashboard, false).await;
    assert!(after.len() == lake.len() && after.iter().zip(&lake).all(|(a, b)| a.iter().zip(b).all(|(x, y)| same(x, y))), "{after:?}\n{lake:?}");
    // Distinct store-hours by store and month: sums of the stored set sizes from the current
    // partitions (disjoint: each holds one store's hours of one month), counted in the lake
    // for the stale month.
    let hours = "SELECT store, date_trunc('month', period) AS m, MEASURE(trading_hours), COUNT(DISTINCT store_count) FROM retail GROUP BY 1, 2";
    let route = explained_route(&engine, hours).await;
    assert!(route.contains("with the lake") && route.contains("trading_hours, store_count summed from disjoint sets"), "{route}");
    let (on, _) = answer(&engine, hours, true).await;
    let (off, _) = answer(&engine, hours, false).await;
    assert_eq!(on, off);
    let routed_stale = differential(&engine, seed + 1, n / 2).await;
    assert!(routed_stale * 3 >= n / 2, "only {routed_stale} of {} queries used a rollup with stale partitions", n / 2);
    let (_, used) = answer(&engine, "SELECT region, department, SUM(footfall) FROM retail GROUP BY 1, 2", true).await;
    assert_eq!(used, ["traffic/monthly_region_department"]);

    // The refresh rebuilds only the partitions the ingest touched (one month each).
    let rebuilt = build_all(&engine).await;
    let status = engine.rollups().status().await.unwrap();
    assert_eq!(rebuilt, status.len(), "one partition per rollup");
    assert!(status.iter().all(|s| s.stale == 0 && s.problem.is_none()), "{status:?}");
    differential(&engine, seed + 2, n / 2).await;
}

/// Which rollup serves the representative statements of benches/queries (or why none does).
#[tokio::test(flavor = "multi_thread")]
async fn benchmark_statements_are_served_by_their_rollup() {
    let dir = fresh_dir("rollups-routing");
    generate_into(&dir, &lakecube::datagen::Preset::Tiny.params());
    let engine = engine(&dir).await;
    build_all(&engine).await;
    // The tiny lake has 3 stores: the store x month rollup (6 rows) is smaller than the
    // region x department x month one (24), so it answers the region questions too.
    let cases: &[(&str, &[&str])] = &[
        ("SELECT region, EXTRACT(YEAR FROM period) AS y, SUM(revenue), SUM(footfall), SUM(conversion) FROM retail GROUP BY 1, 2", &["traffic/monthly_store"]),
        ("SELECT region, department, date_trunc('month', period) AS m, SUM(revenue) FROM retail GROUP BY 1, 2, 3", &["traffic/monthly_region_department"]),
        ("SELECT store, CAST(period AS DATE) AS d, SUM(footfall), SUM(revenue) FROM retail WHERE period >= '2025-11-01' GROUP BY 1, 2", &["traffic/daily_store"]),
        ("SELECT department_family, EXTRACT(DOW FROM period) AS dow, SUM(sales_per_visitor) FROM retail GROUP BY 1, 2", &["traffic/daily_department"]),
        ("SELECT store, department, CAST(period AS DATE) AS d, SUM(footfall) FROM retail GROUP BY 1, 2, 3", &["traffic/daily_store_department"]),
        ("SELECT EXTRACT(DOW FROM period) AS dow, EXTRACT(HOUR FROM period) AS h, SUM(footfall) FROM retail GROUP BY 1, 2", &["traffic/hourly_region"]),
        ("SELECT store, EXTRACT(HOUR FROM period) AS h, SUM(footfall) FROM retail GROUP BY 1, 2", &["traffic/hourly_store"]),
        (r#"SELECT CAST(DATE_TRUNC('MONTH', "retail"."period") AS DATE) AS "tmn:period:ok", SUM("retail"."revenue") AS "sum:revenue:ok" FROM "public"."retail" "retail" GROUP BY 1"#, &["traffic/monthly_store"]),
        (r#"select "region", "C1" from (select "region", sum("revenue") as "C1" from "public"."retail" "_" group by "region") "_" where "C1" > 0"#, &["traffic/monthly_store"]),
        ("SELECT region, date_trunc('month', period) AS m, COUNT(DISTINCT store_count) FROM retail GROUP BY 1, 2", &["traffic/monthly_store"]),
        ("SELECT store_code, date_trunc('month', period) AS m, MEASURE(trading_hours) FROM retail WHERE country = 'Belgium' GROUP BY 1, 2", &["traffic/monthly_store"]),
        ("SELECT store_format, country, MEASURE(average_basket) FROM retail GROUP BY 1, 2", &["traffic/monthly_store"]),
        // The lake's instants are whole hours: the hourly rollups hold them exactly, so any use
        // of the time answers from them (Grafana's time range, minutes).
        ("SELECT date_trunc('minute', period), SUM(footfall) FROM retail GROUP BY 1", &["traffic/hourly_region"]),
        ("SELECT date_trunc('hour', period) AS \"time\", SUM(footfall) AS footfall FROM retail WHERE period BETWEEN '2025-12-01 00:00:00' AND '2025-12-07 23:59:59' GROUP BY 1 ORDER BY 1", &["traffic/hourly_region"]),
        // Days are not: a day rollup never answers by minute. count(*) counts lake rows.
        ("SELECT date_trunc('minute', period), department, SUM(footfall) FROM retail GROUP BY 1, 2", &[]),
        ("SELECT region, count(*) FROM retail GROUP BY 1", &[]),
    ];
    for (sql, want) in cases {
        let (on, used) = answer(&engine, sql, true).await;
        assert_eq!(used, *want, "{sql}");
        let (off, _) = answer(&engine, sql, false).await;
        assert_eq!(on.len(), off.len(), "{sql}");
        for (a, b) in on.iter().zip(&off) {
            assert!(a.iter().zip(b).all(|(x, y)| same(x, y)), "{sql}\non:  {a:?}\noff: {b:?}");
        }
    }
    // A distinct count is summed from the stored sizes where the sets are disjoint (a store's
    // hours in a month) and no group spans two partitions; otherwise the sets are merged.
    let summed = [
        ("SELECT store_code, date_trunc('month', period) AS m, MEASURE(trading_hours) FROM retail WHERE country = 'Belgium' GROUP BY 1, 2", true),
        ("SELECT region, CAST(DATE_TRUNC('MONTH', period) AS DATE) AS m, MEASURE(trading_hours) FROM retail GROUP BY 1, 2", true),
        ("SELECT region, date_trunc('quarter', period) AS q, MEASURE(trading_hours) FROM retail GROUP BY 1, 2", false),
        ("SELECT region, MEASURE(trading_hours) FROM retail GROUP BY 1", false),
        // Store x department x day: a store's hours repeat in each department.
        ("SELECT store, department, CAST(period AS DATE) AS d, MEASURE(trading_hours) FROM retail GROUP BY 1, 2, 3", false),
    ];
    for (sql, want) in summed {
        let route = explained_route(&engine, sql).await;
        assert_eq!(route.contains("trading_hours summed from disjoint sets"), want, "{sql}: {route}");
    }
    // EXPLAIN names the rollup, or each one's reason.
    let route = explained_route(&engine, "SELECT date_trunc('minute', period), department, SUM(footfall) FROM retail GROUP BY 1, 2").await;
    assert!(route.contains("daily_store_department: `date_trunc(Utf8(\"minute\"), period)` needs `period` finer than its day buckets"), "{route}");
    assert!(route.contains("hourly_store: it has no `department`"), "{route}");
}

/// A build killed half-way leaves the rollup serving correct answers (each partition is one
/// atomic commit), and the next build completes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_build_leaves_correct_answers() {
    let (dir, _) = lake_with_exports("rollups-killed");
    let lake = dir.to_str().unwrap().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lakecube"))
        .args(["rollups", "build", "--full", "--lake", &lake])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed (SIGKILL) as soon as the first partition is committed, with the others to come.
    let first_commit = dir.join("_rollups/traffic/daily_store_department/_delta_log/00000000000000000000.json");
    let started = std::time::Instant::now();
    while !first_commit.exists() && started.elapsed() < std::time::Duration::from_secs(120) {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(first_commit.exists(), "the build committed no partition in 120 s");
    let engine = engine(&dir).await;
    let status = engine.rollups().status().await.unwrap();
    let of = |name: &str| status.iter().find(|s| s.name == name).unwrap();
    assert!(of("traffic/daily_store_department").partitions < 5, "the build was not cut short: {status:?}");
    assert!(of("traffic/hourly_store").problem.as_deref().is_some_and(|p| p.starts_with("not built")), "{status:?}");
    differential(&engine, 150, 20).await;
    build_all(&engine).await;
    let status = engine.rollups().status().await.unwrap();
    assert!(status.iter().all(|s| s.stale == 0 && s.problem.is_none()), "{status:?}");
    differential(&engine, 151, 20).await;
}
