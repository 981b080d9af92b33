//! The semantic layer: the cube query each BI idiom becomes, and cube answers checked against
//! hand-written SQL over the raw lake tables.

use crate::common;

use common::*;
use lakecube::datagen::Preset;
use lakecube::engine::Engine;

async fn cube_queries(e: &Engine, sql: &str) -> Vec<String> {
    e.plan_with_cubes(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {}", err.message))
        .cube_queries
        .iter()
        .map(|q| q.to_string())
        .collect()
}

/// Rewrite tests: a table of idioms, each named after the client or idiom it pins.
#[tokio::test(flavor = "multi_thread")]
async fn rewrites_bi_idioms_into_cube_queries() {
    let e = engine(&lake(Preset::Tiny)).await;
    let cases: &[(&str, &str, &[&str])] = &[
        ("psql_sum_of_ratio", "SELECT region, SUM(conversion) FROM retail GROUP BY region",
            &["CubeQuery cube=retail measures=[sum(conversion)] dimensions=[region]"]),
        ("measure_function", "SELECT store_format, MEASURE(average_basket) FROM retail GROUP BY 1",
            &["CubeQuery cube=retail measures=[measure(average_basket)] dimensions=[store_format]"]),
        ("count_distinct_measure", "SELECT COUNT(DISTINCT store_count) FROM retail",
            &["CubeQuery cube=retail measures=[count(store_count)] dimensions=[]"]),
        ("tableau_month", r#"SELECT CAST(DATE_TRUNC('MONTH', "retail"."period") AS DATE) AS "tmn:period:ok", SUM("retail"."revenue") AS "sum:revenue:ok" FROM "public"."retail" "retail" GROUP BY 1"#,
            &["CubeQuery cube=retail measures=[sum(revenue)] dimensions=[period by month]"]),
        ("date_trunc_week", "SELECT date_trunc('week', period), SUM(footfall) FROM retail GROUP BY 1",
            &["CubeQuery cube=retail measures=[sum(footfall)] dimensions=[period by week]"]),
        ("extract_year", "SELECT EXTRACT(YEAR FROM period) AS y, SUM(units) FROM retail GROUP BY 1",
            &["CubeQuery cube=retail measures=[sum(units)] dimensions=[date_part(Utf8(\"YEAR\"), retail.period)]"]),
        ("where_in_and_between", "SELECT department, SUM(transactions) FROM retail WHERE country IN ('France', 'Spain') AND period BETWEEN '2025-11-01' AND '2025-11-30' GROUP BY 1",
            &["CubeQuery cube=retail measures=[sum(transactions)] dimensions=[department] filters=[retail.country IN ([Utf8(\"France\"), Utf8(\"Spain\")]) AND retail.period BETWEEN Utf8(\"2025-11-01\") AND Utf8(\"2025-11-30\")]"]),
        ("tableau_case_filter", "SELECT region, SUM(revenue) FROM retail WHERE (CASE WHEN region = 'Flandre' THEN false ELSE true END) GROUP BY 1",
            &["CubeQuery cube=retail measures=[sum(revenue)] dimensions=[region] filters=[CASE WHEN retail.region = Utf8(\"Flandre\") THEN Boolean(false) ELSE Boolean(true) END]"]),
        ("power_bi_wrapped", r#"select "region", "C1" from (select "region", sum("revenue") as "C1" from "public"."retail" "_" group by "region") "_" where "C1" > 0"#,
            &["CubeQuery cube=retail measures=[sum(revenue)] dimensions=[region]"]),
        ("cte", "WITH m AS (SELECT city, SUM(footfall) AS f FROM retail GROUP BY city) SELECT * FROM m ORDER BY f DESC LIMIT 3",
            &["CubeQuery cube=retail measures=[sum(footfall)] dimensions=[city] order=[m.f DESC] limit=3"]),
        ("year_over_year_join", "SELECT a.region, a.r, b.r FROM (SELECT region, SUM(revenue) r FROM retail WHERE EXTRACT(YEAR FROM period) = 2025 GROUP BY 1) a JOIN (SELECT region, SUM(revenue) r FROM retail WHERE EXTRACT(YEAR FROM period) = 2024 GROUP BY 1) b ON a.region = b.region",
            &["CubeQuery cube=retail measures=[sum(revenue)] dimensions=[region] filters=[date_part(Utf8(\"YEAR\"), retail.period) = Int64(2025)]",
              "CubeQuery cube=retail measures=[sum(revenue)] dimensions=[region] filters=[date_part(Utf8(\"YEAR\"), retail.period) = Int64(2024)]"]),
        ("having_on_measure", "SELECT store, SUM(revenue) FROM retail GROUP BY store HAVING SUM(revenue) > 1000",
            &["CubeQuery cube=retail measures=[sum(revenue)] dimensions=[store]"]),
        ("other_aggregates_over_dimensions", "SELECT count(*), MIN(period), COUNT(DISTINCT store) FROM retail",
            &["CubeQuery cube=retail measures=[] dimensions=[] other=[count(Int64(1)), min(retail.period), count(DISTINCT retail.store)]"]),
        ("ungrouped_columns", "SELECT region, revenue FROM retail",
            &["CubeQuery cube=retail measures=[revenue] dimensions=[region] ungrouped"]),
        ("ungrouped_measure_filter", "SELECT region, revenue FROM retail WHERE revenue > 10",
            &["CubeQuery cube=retail measures=[revenue] dimensions=[region] filters=[retail.revenue > Int64(10)] measure_filters=[retail.revenue > Int64(10)] ungrouped"]),
        ("explain_shows_order_and_limit", "SELECT region, SUM(conversion) FROM retail GROUP BY 1 ORDER BY 2 DESC LIMIT 5 OFFSET 2",
            &["CubeQuery cube=retail measures=[sum(conversion)] dimensions=[region] order=[sum(retail.conversion) DESC] limit=5 offset=2"]),
        ("metabase_select_star_limit", "SELECT * FROM retail LIMIT 5",
            &["CubeQuery cube=retail measures=[footfall, transactions, revenue, units, conversion, average_basket, sales_per_visitor, units_per_transaction, store_count, trading_hours] dimensions=[period, store, store_code, city, region, country, store_format, opened_on, department, department_family] limit=5 ungrouped"]),
    ];
    // Every idiom is checked; the failures are reported together.
    let mut failed = Vec::new();
    for (name, sql, want) in cases {
        let got = cube_queries(&e, sql).await;
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        if got != want {
            failed.push(format!("idiom {name}:\n  got  {got:?}\n  want {want:?}"));
        }
        // And it runs.
        rows(&e, sql).await;
    }
    assert!(failed.is_empty(), "{} of {} idioms differ:\n{}", failed.len(), cases.len(), failed.join("\n"));
}

/// Dimensions of `retail` with the hand-written expression over the lake tables.
const DIMS: &[(&str, &str)] = &[
    ("region", "s.region"),
    ("country", "s.country"),
    ("city", "s.city"),
    ("store", "s.store_name"),
    ("store_code", "s.store_code"),
    ("store_format", "s.store_format"),
    ("opened_on", "s.opened_on"),
    ("department", "d.department"),
    ("department_family", "d.department_family"),
    ("period", "t.ts"),
    ("date_trunc('day', period)", "date_trunc('day', t.ts)"),
    ("date_trunc('week', period)", "date_trunc('week', t.ts)"),
    ("date_trunc('month', period)", "date_trunc('month', t.ts)"),
    ("date_trunc('quarter', period)", "date_trunc('quarter', t.ts)"),
    ("EXTRACT(YEAR FROM period)", "EXTRACT(YEAR FROM t.ts)"),
    ("EXTRACT(HOUR FROM period)", "EXTRACT(HOUR FROM t.ts)"),
    ("EXTRACT(DOW FROM period)", "EXTRACT(DOW FROM t.ts)"),
    ("to_char(period, 'YYYY-MM')", "to_char(t.ts, 'YYYY-MM')"),
    ("CAST(period AS DATE)", "CAST(t.ts AS DATE)"),
];

/// Every measure as a client writes it, and by hand over the lake.
const MEASURES: &[(&str, &str)] = &[
    ("SUM(footfall)", "SUM(t.footfall)"),
    ("SUM(transactions)", "SUM(t.transactions)"),
    ("SUM(revenue)", "SUM(t.revenue)"),
    ("SUM(units)", "SUM(t.units)"),
    ("SUM(conversion)", "CAST(SUM(t.transactions) AS DOUBLE) / NULLIF(CAST(SUM(t.footfall) AS DOUBLE), 0)"),
    ("AVG(average_basket)", "CAST(SUM(t.revenue) AS DOUBLE) / NULLIF(CAST(SUM(t.transactions) AS DOUBLE), 0)"),
    ("MEASURE(sales_per_visitor)", "CAST(SUM(t.revenue) AS DOUBLE) / NULLIF(CAST(SUM(t.footfall) AS DOUBLE), 0)"),
    ("MAX(units_per_transaction)", "CAST(SUM(t.units) AS DOUBLE) / NULLIF(CAST(SUM(t.transactions) AS DOUBLE), 0)"),
    ("COUNT(DISTINCT store_count)", "COUNT(DISTINCT t.store_id)"),
    ("MEASURE(trading_hours)", "COUNT(DISTINCT CAST(t.store_id AS VARCHAR) || '@' || CAST(t.ts AS VARCHAR))"),
];

const FILTERS: &[(&str, &str)] = &[
    ("", ""),
    ("WHERE country = 'France' AND store_format <> 'outlet'", "WHERE s.country = 'France' AND s.store_format <> 'outlet'"),
    ("WHERE period >= '2025-12-01' AND period < '2026-01-01' AND department LIKE '%wear'", "WHERE t.ts >= '2025-12-01' AND t.ts < '2026-01-01' AND d.department LIKE '%wear'"),
];

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

async fn grid(preset: Preset, dims: &[&str]) {
    let e = engine(&lake(preset)).await;
    let ms_cube: Vec<&str> = MEASURES.iter().map(|m| m.0).collect();
    let ms_hand: Vec<&str> = MEASURES.iter().map(|m| m.1).collect();
    let mut checked = 0;
    for (dim_cube, dim_hand) in DIMS.iter().filter(|(d, _)| dims.is_empty() || dims.contains(d)) {
        for (f_cube, f_hand) in FILTERS {
            let cube = format!("SELECT {dim_cube} AS k, {} FROM retail {f_cube} GROUP BY 1 ORDER BY 1", ms_cube.join(", "));
            let hand = format!(
                "SELECT {dim_hand} AS k, {} FROM lake.traffic t JOIN lake.stores s ON t.store_id = s.store_id \
                 JOIN lake.departments d ON t.department_id = d.department_id {f_hand} GROUP BY 1 ORDER BY 1",
                ms_hand.join(", ")
            );
            let (a, b) = (rows(&e, &cube).await, rows(&e, &hand).await);
            assert!(!a.is_empty(), "{cube}");
            assert_eq!(a.len(), b.len(), "{cube}");
            for (ra, rb) in a.iter().zip(&b) {
                for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
                    assert!(close(x, y), "{cube}\ncolumn {i}: cube {x} vs hand-written {y}\nrow {ra:?}\nvs {rb:?}");
                }
            }
            checked += a.len();
        }
    }
    assert!(checked > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn cube_answers_equal_hand_written_sql_on_the_tiny_lake() {
    grid(Preset::Tiny, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cube_answers_equal_hand_written_sql_on_the_demo_lake() {
    // Every dimension on the tiny lake; on the demo lake (a million rows, two years) the
    // coarser ones, where the years, the openings and closings and the holidays add up.
    grid(Preset::Demo, &["region", "store", "department_family", "date_trunc('month', period)", "EXTRACT(YEAR FROM period)", "EXTRACT(DOW FROM period)"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_month_filter_reads_one_month() {
    let e = engine(&lake(Preset::Demo)).await;
    let plan = rows(&e, "EXPLAIN SELECT region, SUM(footfall) FROM retail WHERE period >= '2025-03-01' AND period < '2025-04-01' GROUP BY 1").await;
    let physical = plan.iter().find(|r| r[0] == "physical_plan").expect("physical plan")[1].clone();
    let months: Vec<&str> = physical.match_indices("traffic/month=").map(|(i, _)| &physical[i..i + 25]).collect();
    assert_eq!(months, vec!["traffic/month=2025-03-01/"], "{physical}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_the_cube_query_then_the_lake_plan() {
    let e = engine(&lake(Preset::Tiny)).await;
    let r = rows(&e, "EXPLAIN SELECT date_trunc('month', period), SUM(revenue) FROM retail WHERE region = 'Wallonie' GROUP BY 1 ORDER BY 1 LIMIT 12").await;
    assert_eq!(r[0][0], "cube_query");
    assert_eq!(
        r[0][1],
        "CubeQuery cube=retail measures=[sum(revenue)] dimensions=[period by month] filters=[retail.region = Utf8(\"Wallonie\")] order=[date_trunc(Utf8(\"month\"),retail.period) ] limit=12"
            .replace(" ]", "]")
    );
    // Then which rollup answers: none is built in this lake.
    assert_eq!(r[1][0], "rollup");
    assert!(r[1][1].starts_with("none (daily_store_department: not built"), "{}", r[1][1]);
    assert!(r.iter().any(|x| x[0] == "physical_plan" && x[1].contains("traffic/month=")), "{r:?}");
}

/// The example of docs/cube-format.md, as a user would copy it: it validates, serves, and
/// its segment, filtered measure and `sql:` cube give the hand-written answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_example_cube_works() {
    let doc = std::fs::read_to_string("docs/cube-format.md").unwrap();
    let yaml = doc.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
    let model = lakecube::model::Model::from_texts(&[("example.yaml", yaml)]).unwrap_or_else(|p| panic!("{p:?}"));
    let lake_dir = lake(Preset::Tiny);
    let lake = lakecube::storage::Lake::open(lake_dir.to_str().unwrap(), false).unwrap();
    let e = Engine::open(lake, Some(&model)).await.unwrap();
    let cube = rows(&e, "SELECT region, SUM(footfall), SUM(weekend_footfall), ROUND(SUM(conversion), 9) FROM shop_traffic WHERE NOT weekend GROUP BY 1 ORDER BY 1").await;
    let hand = rows(
        &e,
        "SELECT s.region, SUM(t.footfall), 0, ROUND(CAST(SUM(t.transactions) AS DOUBLE) / SUM(t.footfall), 9)
         FROM lake.traffic t LEFT JOIN (SELECT * FROM lake.stores WHERE closed_on IS NULL) s ON t.store_id = s.store_id
         WHERE EXTRACT(DOW FROM t.ts) NOT IN (0, 6) GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(cube.len(), hand.len());
    for (a, b) in cube.iter().zip(&hand) {
        assert_eq!(a[0], b[0]);
        assert_eq!(a[1], b[1]);
        assert_eq!(a[2], "NULL", "no weekend rows once weekends are filtered out: {a:?}");
        assert_eq!(a[3], b[3]);
    }
    let weekend: i64 = scalar(&e, "SELECT SUM(weekend_footfall) FROM shop_traffic").await;
    let hand: i64 = scalar(&e, "SELECT SUM(footfall) FROM lake.traffic WHERE EXTRACT(DOW FROM ts) IN (0, 6)").await;
    assert_eq!(weekend, hand);
    assert!(weekend > 0);
}

/// A query joins only the cubes whose members it uses (many_to_one joins never change the
/// row count, so leaving one out changes no answer; the result grid checks the answers).
#[tokio::test(flavor = "multi_thread")]
async fn only_the_needed_cubes_are_joined() {
    let e = engine(&lake(Preset::Tiny)).await;
    let scans = |sql: &'static str| {
        let e = &e;
        async move {
            let plan = rows(e, &format!("EXPLAIN {sql}")).await;
            let logical = plan.iter().find(|r| r[0] == "logical_plan").unwrap()[1].clone();
            let mut t: Vec<String> = logical.match_indices("TableScan: lake.").map(|(i, _)| logical[i + 16..].split_whitespace().next().unwrap().to_string()).collect();
            t.sort();
            t
        }
    };
    assert_eq!(scans("SELECT date_trunc('month', period), SUM(conversion) FROM retail GROUP BY 1").await, vec!["traffic"]);
    assert_eq!(scans("SELECT department, SUM(footfall) FROM retail GROUP BY 1").await, vec!["departments", "traffic"]);
    assert_eq!(scans("SELECT region, revenue FROM retail WHERE department = 'Home'").await, vec!["departments", "stores", "traffic"]);
    assert_eq!(scans("SELECT count(*) FROM retail WHERE store_format = 'mall'").await, vec!["stores", "traffic"]);
}

/// Stores with their hourly traffic, joined both ways: a view rooted at `stores` joining
/// `traffic` one_to_many, and one rooted at `traffic` joining `stores` many_to_one. A store's
/// selling area is summed once per store whatever the join repeats (the fan trap).
const FAN_TRAP_MODEL: &str = r#"
cubes:
  - name: stores
    sql_table: lake.stores
    joins:
      - name: traffic
        relationship: one_to_many
        sql: "{CUBE}.store_id = {traffic.store_id}"
    dimensions:
      - name: store_id
        sql: store_id
        type: number
        primary_key: true
      - name: region
        sql: region
        type: string
    measures:
      - name: selling_area
        sql: surface_m2
        type: sum
      - name: store_rows
        type: count
      - name: largest_store
        sql: surface_m2
        type: max
  - name: traffic
    sql_table: lake.traffic
    joins:
      - name: stores
        relationship: many_to_one
        sql: "{CUBE}.store_id = {stores.store_id}"
    dimensions:
      - name: store_id
        sql: store_id
        type: number
        public: false
      - name: period
        sql: ts
        type: time
    measures:
      - name: footfall
        sql: footfall
        type: sum
views:
  - name: store_traffic
    cubes:
      - join_path: stores
        includes: "*"
      - join_path: stores.traffic
        includes: [period, footfall]
  - name: traffic_stores
    cubes:
      - join_path: traffic
        includes: [period, footfall]
      - join_path: traffic.stores
        includes: [region, selling_area, store_rows]
"#;

async fn engine_with(yaml: &str) -> Engine {
    let model = lakecube::model::Model::from_texts(&[("fan.yaml", yaml)]).unwrap_or_else(|p| panic!("{p:?}"));
    let lake = lakecube::storage::Lake::open(lake(Preset::Tiny).to_str().unwrap(), false).unwrap();
    Engine::open(lake, Some(&model)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_to_many_joins_never_double_count() {
    let e = engine_with(FAN_TRAP_MODEL).await;
    // The lake's second month.
    let start: String = scalar(&e, "SELECT CAST(date_trunc('month', min(ts)) + INTERVAL '1 month' AS VARCHAR) FROM lake.traffic").await;
    let bounds = |c: &str| format!("{c} >= TIMESTAMP '{start}' AND {c} < TIMESTAMP '{start}' + INTERVAL '1 month'");
    let (month, lake_month) = (bounds("period"), bounds("ts"));
    // Rooted at stores: every store once, with or without hours; footfall of all hours.
    let cube = rows(&e, "SELECT region, SUM(selling_area), COUNT(store_rows), MAX(largest_store), SUM(footfall) FROM store_traffic GROUP BY 1 ORDER BY 1").await;
    let hand = rows(
        &e,
        "SELECT s.region, SUM(s.surface_m2), COUNT(*), MAX(s.surface_m2), SUM(f.footfall) FROM lake.stores s
         LEFT JOIN (SELECT store_id, SUM(footfall) AS footfall FROM lake.traffic GROUP BY 1) f USING (store_id) GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert!(cube.len() > 1);
    assert_eq!(cube, hand);
    // Filtered to a month on the many side: the stores with hours that month, once each.
    let cube = rows(&e, &format!("SELECT region, SUM(selling_area), SUM(footfall) FROM store_traffic WHERE {month} GROUP BY 1 ORDER BY 1")).await;
    let hand = rows(
        &e,
        &format!(
            "SELECT s.region, SUM(s.surface_m2), SUM(f.footfall) FROM lake.stores s
             JOIN (SELECT store_id, SUM(footfall) AS footfall FROM lake.traffic WHERE {lake_month} GROUP BY 1) f USING (store_id) GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    assert!(!cube.is_empty());
    assert_eq!(cube, hand);
    // Grouped by a many-side dimension: each month counts the stores open in it once.
    let cube = rows(&e, "SELECT date_trunc('month', period), SUM(selling_area) FROM store_traffic GROUP BY 1 ORDER BY 1 LIMIT 5").await;
    let hand = rows(
        &e,
        "SELECT m, SUM(s.surface_m2) FROM lake.stores s JOIN (SELECT DISTINCT store_id, date_trunc('month', ts) AS m FROM lake.traffic) t USING (store_id)
         GROUP BY 1 ORDER BY 1 LIMIT 5",
    )
    .await;
    assert_eq!(cube, hand);
    // A total with no group at all, and the ungrouped form.
    let total: i64 = scalar(&e, "SELECT SUM(selling_area) FROM store_traffic").await;
    let hand_total: i64 = scalar(&e, "SELECT SUM(surface_m2) FROM lake.stores").await;
    assert_eq!(total, hand_total);
    let cube = rows(&e, "SELECT region, selling_area FROM store_traffic ORDER BY 1").await;
    let hand = rows(&e, "SELECT region, SUM(surface_m2) FROM lake.stores GROUP BY 1 ORDER BY 1").await;
    assert_eq!(cube, hand);

    // Rooted at traffic, stores joined many_to_one: a store's row repeats for each of its
    // hours, and is still counted once.
    let cube = rows(&e, &format!("SELECT region, SUM(selling_area), COUNT(store_rows), SUM(footfall) FROM traffic_stores WHERE {month} GROUP BY 1 ORDER BY 1")).await;
    let hand = rows(
        &e,
        &format!(
            "SELECT s.region, SUM(s.surface_m2), COUNT(*), SUM(f.footfall) FROM lake.stores s
             JOIN (SELECT store_id, SUM(footfall) AS footfall FROM lake.traffic WHERE {lake_month} GROUP BY 1) f USING (store_id) GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    assert!(!cube.is_empty());
    assert_eq!(cube, hand);
}

/// Summing a repeated cube's measure needs its primary key; without one the query fails with
/// a hint, never a double-counted answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_cube_without_primary_key_is_an_error() {
    let e = engine_with(&FAN_TRAP_MODEL.replace("        primary_key: true\n", "")).await;
    let Err(err) = e.sql("SELECT region, SUM(selling_area), SUM(footfall) FROM store_traffic GROUP BY 1").await else { panic!("no error") };
    assert_eq!(err.kind.sqlstate(), "0A000", "{err:?}");
    assert!(err.message.contains("no primary key") && err.hint.as_deref().unwrap_or("").contains("primary_key: true"), "{err:?}");
    // What does not repeat still answers: footfall alone, and the stores' own measures alone.
    let f: i64 = scalar(&e, "SELECT SUM(footfall) FROM store_traffic").await;
    assert_eq!(f, scalar::<i64>(&e, "SELECT SUM(footfall) FROM lake.traffic").await);
    let a: i64 = scalar(&e, "SELECT SUM(selling_area) FROM store_traffic").await;
    assert_eq!(a, scalar::<i64>(&e, "SELECT SUM(surface_m2) FROM lake.stores").await);
}

/// The plan cache: a repeated cube statement reuses its optimized plan and answers as a fresh
/// plan does; statements whose plan could go stale (a clock, placeholders, other session
/// settings, a size function) are planned every time; catalog statements are kept too.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_cube_statements_reuse_their_plan() {
    use lakecube::pg::settings::SessionInfo;
    let e = engine(&lake(Preset::Tiny)).await;
    let fresh = e.clone().with_plan_cache(0);
    let q = "SELECT region, SUM(conversion), MEASURE(store_count) FROM retail WHERE period >= '2025-01-01' GROUP BY 1 ORDER BY 1";
    let first = rows(&e, q).await;
    assert_eq!(e.plan_cache_stats().hits, 0);
    let second = rows(&e, q).await;
    assert_eq!(e.plan_cache_stats().hits, 1, "the second run of {q} should reuse the plan");
    assert!(!first.is_empty());
    assert_eq!(first, second);
    assert_eq!(first, rows(&fresh, q).await, "a cached plan answers as a fresh one");
    assert_eq!(fresh.plan_cache_stats().hits, 0);

    let before = e.plan_cache_stats().hits;
    for q in [
        // now() is folded into a constant by the optimizer: never kept.
        "SELECT SUM(footfall) FROM retail WHERE period < now()",
        "SELECT SUM(footfall) FROM retail WHERE period < current_date",
        "EXPLAIN SELECT SUM(footfall) FROM retail",
        // A size function: an ingest changes a table's bytes.
        "SELECT c.relname, pg_table_size(c.oid) FROM pg_catalog.pg_class c",
    ] {
        rows(&e, q).await;
        rows(&e, q).await;
    }
    let placeholder = "SELECT SUM(footfall) FROM retail WHERE store_code = $1";
    for _ in 0..2 {
        assert!(!e.plan_with_cubes(placeholder).await.unwrap().optimized);
    }
    assert_eq!(e.plan_cache_stats().hits, before, "none of these may come from the cache");

    // Another session's settings are another key.
    let mut other = SessionInfo::default();
    other.settings.set("TimeZone", "Europe/Paris").unwrap();
    let planned = e.plan_sql(q, &other).await.unwrap().unwrap();
    assert_eq!(e.plan_cache_stats().hits, before);
    assert!(planned.optimized);
    e.plan_sql(q, &other).await.unwrap().unwrap();
    assert_eq!(e.plan_cache_stats().hits, before + 1);

    // A statement over no table (a pool's `SELECT 1`) is kept too, and answers the same.
    for q in ["SELECT 1", "SELECT 2 + 3, 'x' || 'y', (SELECT max(a) FROM (VALUES (1), (4)) AS t(a))"] {
        let before = e.plan_cache_stats().hits;
        let first = rows(&e, q).await;
        let second = rows(&e, q).await;
        assert_eq!(e.plan_cache_stats().hits, before + 1, "the second run of {q} should reuse the plan");
        assert_eq!(first, second);
        assert_eq!(first, rows(&fresh, q).await);
    }
    // Its rows are kept once it has run, and later runs send them without DataFusion
    // (engine::constant); a statement reading a table keeps none.
    let planned = e.plan_with_cubes("SELECT 1").await.unwrap();
    let kept = planned.constant.clone().expect("SELECT 1 is a constant statement");
    assert!(kept.stream().is_some(), "SELECT 1 ran above: its rows should be kept");
    assert_eq!(rows(&e, "SELECT 1").await, rows(&fresh, "SELECT 1").await);
    assert!(e.plan_with_cubes(q).await.unwrap().constant.is_none(), "a cube statement reads the lake");
    // A subquery reading a lake table keeps the statement out.
    let before = e.plan_cache_stats().hits;
    for _ in 0..2 {
        rows(&e, "SELECT 1, (SELECT count(*) FROM lake.stores)").await;
    }
    assert_eq!(e.plan_cache_stats().hits, before);

    // A catalog statement (a driver or BI tool browsing) is kept, with the catalog functions
    // fixed for the engine's lifetime, and answers as a fresh plan does; its rows are kept too
    // (the catalog's rows are made from the engine's tables, fixed for its lifetime).
    let catalog = "SELECT n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.format_type(a.atttypid, a.atttypmod) \
                   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1 \
                   WHERE c.relkind IN ('r', 'v') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1, 2";
    let before = e.plan_cache_stats().hits;
    let (a, b) = (rows(&e, catalog).await, rows(&e, catalog).await);
    assert_eq!(e.plan_cache_stats().hits, before + 1, "the second run of the catalog statement should reuse its plan");
    assert!(a.len() > 3, "{a:?}");
    assert_eq!(a, b);
    assert_eq!(a, rows(&fresh, catalog).await);
    let kept = e.plan_with_cubes(catalog).await.unwrap().constant.expect("a catalog statement's answer is fixed");
    assert!(kept.stream().is_some(), "the catalog statement ran above: its rows should be kept");
    assert_eq!(rows(&e, catalog).await, a);
    // A size function (an ingest changes a table's bytes) keeps a catalog statement out.
    let sized = "SELECT c.relname, pg_catalog.pg_table_size(c.oid) FROM pg_catalog.pg_class c WHERE c.relkind = 'r'";
    assert!(e.plan_with_cubes(sized).await.unwrap().constant.is_none(), "sizes change with the lake");
    let before = e.plan_cache_stats().hits;
    for _ in 0..2 {
        rows(&e, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1").await;
    }
    assert_eq!(e.plan_cache_stats().hits, before + 1, "information_schema is a catalog too");
}

/// `EXTRACT(DOW|HOUR|YEAR|MONTH …)` on a timestamp runs as integer arithmetic
/// (`engine::fast_time`), with the same answers as an independent path (chrono's formatting).
#[tokio::test(flavor = "multi_thread")]
async fn extracted_time_parts_use_the_fast_path_and_agree_with_to_char() {
    let e = engine(&lake(Preset::Demo)).await;
    let cube = "SELECT EXTRACT(YEAR FROM period) AS y, EXTRACT(MONTH FROM period) AS m, EXTRACT(DOW FROM period) AS dow, \
                EXTRACT(HOUR FROM period) AS h, SUM(footfall) FROM retail GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
    let plan = rows(&e, &format!("EXPLAIN {cube}")).await;
    let text = format!("{plan:?}");
    for f in ["date_part_year(", "date_part_month(", "date_part_dow(", "date_part_hour("] {
        assert!(text.contains(f), "{f} not in the plan: {text}");
    }
    let hand = "SELECT CAST(to_char(ts, 'YYYY') AS INT), CAST(to_char(ts, 'MM') AS INT), CAST(to_char(ts, 'ID') AS INT) % 7, \
                CAST(to_char(ts, 'HH24') AS INT), SUM(footfall) FROM lake.traffic GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
    let (a, b) = (rows(&e, cube).await, rows(&e, hand).await);
    assert!(a.len() > 1000, "{}", a.len());
    assert_eq!(a, b);
}

/// A LIMIT over groups ordered by the time dimension (a "latest rows" preview, Tableau's and
/// DBeaver's first page) aggregates only the rows of the first distinct hours
/// (`TopGroups` in `semantic::rewrite`), with the answers of hand-written SQL; where a filter,
/// a HAVING or an order by something else decides which groups come first, it does not.
#[tokio::test(flavor = "multi_thread")]
async fn limited_reads_aggregate_only_their_first_groups() {
    let e = engine(&lake(Preset::Tiny)).await;
    const JOINS: &str = "FROM lake.traffic t JOIN lake.stores s ON t.store_id = s.store_id JOIN lake.departments d ON t.department_id = d.department_id";
    let cases: &[(&str, String, bool)] = &[
        (
            "SELECT store_code, department, period, footfall, revenue, conversion FROM retail ORDER BY period DESC, store_code, department LIMIT 50 OFFSET 7",
            format!("SELECT s.store_code, d.department, t.ts, SUM(t.footfall), SUM(t.revenue), CAST(SUM(t.transactions) AS DOUBLE) / NULLIF(SUM(t.footfall), 0) {JOINS} GROUP BY 1, 2, 3 ORDER BY 3 DESC, 1, 2 LIMIT 50 OFFSET 7"),
            true,
        ),
        (
            "SELECT period, region, SUM(footfall), MEASURE(conversion) FROM retail WHERE region <> 'Wallonie' GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 30",
            format!("SELECT t.ts, s.region, SUM(t.footfall), CAST(SUM(t.transactions) AS DOUBLE) / NULLIF(SUM(t.footfall), 0) {JOINS} WHERE s.region <> 'Wallonie' GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 30"),
            true,
        ),
        (
            "SELECT period, COUNT(DISTINCT store_count), SUM(units) FROM retail GROUP BY 1 ORDER BY 1 DESC NULLS LAST LIMIT 9",
            "SELECT ts, COUNT(DISTINCT store_id), SUM(units) FROM lake.traffic GROUP BY 1 ORDER BY 1 DESC NULLS LAST LIMIT 9".into(),
            true,
        ),
        (
            // Power BI's and Tableau's wrapping: the order and limit stand outside the subquery.
            r#"SELECT "p", "r" FROM (SELECT "period" AS "p", SUM("revenue") AS "r" FROM "public"."retail" "_" GROUP BY "period") "_" ORDER BY "p" DESC LIMIT 5"#,
            "SELECT ts, SUM(revenue) FROM lake.traffic GROUP BY 1 ORDER BY 1 DESC LIMIT 5".into(),
            true,
        ),
        (
            "SELECT period, SUM(footfall) FROM retail GROUP BY 1 HAVING SUM(footfall) > 200 ORDER BY 1 DESC LIMIT 5",
            "SELECT ts, SUM(footfall) FROM lake.traffic GROUP BY 1 HAVING SUM(footfall) > 200 ORDER BY 1 DESC LIMIT 5".into(),
            false,
        ),
        (
            r#"SELECT "p", "f" FROM (SELECT "period" AS "p", SUM("footfall") AS "f" FROM "retail" GROUP BY 1) "_" WHERE "f" > 200 ORDER BY 1 DESC LIMIT 5"#,
            "SELECT ts, SUM(footfall) FROM lake.traffic GROUP BY 1 HAVING SUM(footfall) > 200 ORDER BY 1 DESC LIMIT 5".into(),
            false,
        ),
        (
            "SELECT period, footfall FROM retail WHERE footfall > 200 ORDER BY period DESC LIMIT 5",
            "SELECT ts, SUM(footfall) FROM lake.traffic GROUP BY 1 HAVING SUM(footfall) > 200 ORDER BY 1 DESC LIMIT 5".into(),
            false,
        ),
        (
            "SELECT period, SUM(footfall) AS f FROM retail GROUP BY 1 ORDER BY f DESC, 1 LIMIT 5",
            "SELECT ts, SUM(footfall) AS f FROM lake.traffic GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5".into(),
            false,
        ),
        (
            // A time dimension of a joined cube (few values, found only through the join).
            "SELECT opened_on, store, SUM(footfall) FROM retail GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 3",
            format!("SELECT s.opened_on, s.store_name, SUM(t.footfall) {JOINS} GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 3"),
            false,
        ),
        (
            "SELECT region, period, SUM(footfall) FROM retail GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 5",
            format!("SELECT s.region, t.ts, SUM(t.footfall) {JOINS} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 5"),
            false,
        ),
    ];
    for (cube, hand, prefiltered) in cases {
        let plan = format!("{:?}", rows(&e, &format!("EXPLAIN {cube}")).await);
        assert_eq!(plan.contains("__top_value"), *prefiltered, "{cube}\n{plan}");
        let (a, b) = (rows(&e, cube).await, rows(&e, hand).await);
        assert!(!a.is_empty(), "{cube}");
        assert_eq!(a.len(), b.len(), "{cube}");
        for (ra, rb) in a.iter().zip(&b) {
            assert!(ra.iter().zip(rb).all(|(x, y)| close(x, y)), "{cube}\ncube {ra:?}\nhand-written {rb:?}");
        }
    }
    // Without ORDER BY any groups will do, but each must be whole: every row is a row of the
    // hand-written answer at the same grain.
    let cube = "SELECT period, store_code, department, footfall, revenue FROM retail LIMIT 40";
    assert!(format!("{:?}", rows(&e, &format!("EXPLAIN {cube}")).await).contains("__top_value"));
    let all: std::collections::HashSet<Vec<String>> =
        rows(&e, &format!("SELECT t.ts, s.store_code, d.department, SUM(t.footfall), SUM(t.revenue) {JOINS} GROUP BY 1, 2, 3")).await.into_iter().collect();
    let some = rows(&e, cube).await;
    assert_eq!(some.len(), 40);
    for r in &some {
        assert!(all.contains(r), "{r:?} is not a whole group");
    }
}

/// Cube reads inside the subqueries of expressions (a share of the total, `IN (SELECT …)`)
/// are rewritten like any other, checked against the raw lake; and a plan DataFusion builds
/// without the engine (its own SQL front end) is rewritten by the analyzer rule: no plan
/// runs with a cube read left in it.
#[tokio::test(flavor = "multi_thread")]
async fn cube_reads_in_subqueries_and_outside_the_engine_are_rewritten() {
    use futures::StreamExt;
    let e = engine(&lake(Preset::Tiny)).await;
    let from = "FROM lake.traffic t JOIN lake.stores s ON t.store_id = s.store_id";
    // A region's share of all revenue: a scalar subquery over the cube.
    let share = rows(&e, "SELECT region, ROUND(CAST(SUM(revenue) AS DOUBLE) / (SELECT CAST(SUM(revenue) AS DOUBLE) FROM retail), 9) FROM retail GROUP BY 1 ORDER BY 1").await;
    let raw = rows(&e, &format!("SELECT s.region, ROUND(CAST(SUM(t.revenue) AS DOUBLE) / (SELECT CAST(SUM(revenue) AS DOUBLE) FROM lake.traffic), 9) {from} GROUP BY 1 ORDER BY 1")).await;
    assert_eq!(share, raw);
    assert_eq!(share.len(), 3, "{share:?}");
    // Stores picked by a subquery over the cube, in a cube read and in a lake read.
    let picked = "SELECT store FROM retail WHERE region = 'Bruxelles-Capitale'";
    let cube = rows(&e, &format!("SELECT store, SUM(footfall) FROM retail WHERE store IN ({picked}) GROUP BY 1 ORDER BY 1")).await;
    let raw = rows(&e, &format!("SELECT s.store_name, SUM(t.footfall) {from} WHERE s.region = 'Bruxelles-Capitale' GROUP BY 1 ORDER BY 1")).await;
    assert_eq!(cube, raw);
    assert!(!cube.is_empty());
    let lake_read = rows(&e, &format!("SELECT s.store_name, SUM(t.footfall) {from} WHERE s.store_name IN ({picked}) GROUP BY 1 ORDER BY 1")).await;
    assert_eq!(lake_read, raw);
    // EXISTS over the cube, and a read of neither dimensions nor measures: one row when the
    // filters leave any, none otherwise (as DISTINCT over no column).
    for (region, want) in [("Bruxelles-Capitale", 3), ("Nowhere", 0)] {
        let sql = format!("SELECT region, SUM(footfall) FROM retail WHERE EXISTS (SELECT 1 FROM retail r2 WHERE r2.region = '{region}') GROUP BY 1");
        assert_eq!(rows(&e, &sql).await.len(), want, "{sql}");
    }
    assert_eq!(rows(&e, "SELECT 1 FROM retail").await, vec![vec!["1".to_string()]]);
    assert!(rows(&e, "SELECT 1 FROM retail WHERE region = 'Nowhere'").await.is_empty());
    // A read of no column of a lake table keeps its LIMIT (deltalake's metadata-only scan
    // would drop it: storage::latest::KeepLimit).
    assert_eq!(rows(&e, "SELECT 1 FROM lake.traffic LIMIT 2").await.len(), 2);
    // DataFusion's own SQL path: not planned by the engine, rewritten all the same.
    let sql = "SELECT region, SUM(footfall) AS f FROM retail GROUP BY region ORDER BY region";
    let df = e.context().sql(sql).await.unwrap();
    let mut stream = df.execute_stream().await.unwrap();
    let mut direct = Vec::new();
    while let Some(b) = stream.next().await {
        direct.extend(batch_rows(&b.unwrap()));
    }
    assert_eq!(direct, rows(&e, &format!("SELECT s.region, SUM(t.footfall) {from} GROUP BY 1 ORDER BY 1")).await);
}
