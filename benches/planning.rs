//! Planning overhead: SQL text → physical plan over the lake, for the benchmark queries, on an
//! empty lake (so no data is read). Prints p50 and p95 per query, first without the plan cache
//! (every run plans from scratch, as a statement seen for the first time) and then with it (a
//! statement repeated, as dashboards do: the optimized logical plan is reused, the physical
//! plan is made again).
//!
//! Run: `cargo bench --bench planning [-- NAME…]` (figures go in docs/performance.md); names
//! keep only the queries whose name contains one of them (to profile one).

use std::time::{Duration, Instant};

use lakecube::datagen;
use lakecube::engine::Engine;
use lakecube::storage::Lake;

const QUERIES: &[(&str, &str)] = &[
    ("totals_by_region_year", "SELECT region, EXTRACT(YEAR FROM period) AS y, SUM(footfall), SUM(revenue), SUM(conversion) FROM retail GROUP BY 1, 2"),
    ("store_by_day_90d", "SELECT CAST(period AS DATE) AS d, SUM(footfall), SUM(transactions) FROM retail WHERE store_code = 'FR-PAR-001' AND period >= '2025-01-01' AND period < '2025-04-01' GROUP BY 1 ORDER BY 1"),
    ("monthly_trend_department", "SELECT date_trunc('month', period) AS m, department, SUM(revenue), MEASURE(average_basket) FROM retail WHERE region = 'Île-de-France' GROUP BY 1, 2"),
    ("hour_weekday_heatmap", "SELECT EXTRACT(DOW FROM period) AS dow, EXTRACT(HOUR FROM period) AS h, SUM(footfall) FROM retail GROUP BY 1, 2"),
    ("top_stores_conversion", "SELECT store, SUM(conversion) AS c FROM retail WHERE period >= '2025-07-01' AND period < '2025-10-01' GROUP BY 1 ORDER BY c DESC LIMIT 10"),
    ("power_bi_wrapped", r#"select "region", "C1" from (select "region", sum("revenue") as "C1" from "public"."retail" "_" group by "region") "_" where "C1" > 0 limit 1000001"#),
    ("tableau_month", r#"SELECT CAST(DATE_TRUNC('MONTH', "retail"."period") AS DATE) AS "tmn:period:ok", SUM("retail"."revenue") AS "sum:revenue:ok" FROM "public"."retail" "retail" GROUP BY 1"#),
    ("ungrouped_limit", "SELECT * FROM retail LIMIT 1000"),
    ("raw_lake_join", "SELECT s.region, SUM(t.revenue) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1"),
];

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
        datagen::create_empty(&lake).await.unwrap();
        let model = lakecube::model::load_dir(std::path::Path::new("cube-defs")).unwrap();
        let cached = Engine::open(lake, Some(&model)).await.unwrap();
        let uncached = cached.clone().with_plan_cache(0);
        println!("| query | p50 ms, uncached | p95 ms, uncached | p50 ms, cached | p95 ms, cached |\n|---|---|---|---|---|");
        let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
        for (name, sql) in QUERIES.iter().filter(|(n, _)| only.is_empty() || only.iter().any(|o| n.contains(o.as_str()))) {
            let (p50, p95) = measure(&uncached, sql).await;
            let (c50, c95) = measure(&cached, sql).await;
            println!("| {name} | {p50:.2} | {p95:.2} | {c50:.2} | {c95:.2} |");
        }
        let stats = cached.plan_cache_stats();
        eprintln!("plan cache: {} hits, {} plans stored", stats.hits, stats.stored);
    });
}

/// p50 and p95 in ms of SQL text → physical plan, over 280 runs after 20 warm-up runs.
async fn measure(engine: &Engine, sql: &str) -> (f64, f64) {
    let mut samples: Vec<Duration> = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let planned = engine.plan_with_cubes(sql).await.unwrap();
        engine.physical_plan(&planned.plan, planned.optimized).await.unwrap();
        if i >= 20 {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    (p(0.5), p(0.95))
}
