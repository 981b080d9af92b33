//! `lakecube generate`: determinism, the shape of the data, and totals checked against the
//! Parquet files themselves.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;

use common::*;
use datafusion::arrow::array::{Array, Decimal128Array, Int32Array};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use lakecube::datagen::Preset;

const ALL_TRAFFIC: &str = "SELECT * FROM lake.traffic ORDER BY store_id, department_id, ts";

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_same_lake_other_seed_other_lake() {
    let mut p = Preset::Tiny.params();
    let a = fresh_dir("det-a");
    let b = fresh_dir("det-b");
    let c = fresh_dir("det-c");
    generate_into(&a, &p);
    generate_into(&b, &p);
    p.seed += 1;
    generate_into(&c, &p);
    let (ea, eb, ec) = (engine(&a).await, engine(&b).await, engine(&c).await);
    for sql in [ALL_TRAFFIC, "SELECT * FROM lake.stores ORDER BY store_id", "SELECT * FROM lake.departments ORDER BY 1"] {
        let ra = rows(&ea, sql).await;
        assert!(!ra.is_empty(), "{sql}");
        assert_eq!(ra, rows(&eb, sql).await, "{sql}: same seed must give the same rows");
    }
    assert_ne!(rows(&ea, ALL_TRAFFIC).await, rows(&ec, ALL_TRAFFIC).await, "another seed must give other rows");
}

/// Opening hours as the product promises them, written here independently of the generator:
/// (format, weekday 0 = Sunday) → [open, close), or closed.
const HOURS_CHECK: &str = "
    SELECT count(*) FROM lake.traffic t JOIN lake.stores s USING (store_id)
    WHERE NOT (
      CASE
        WHEN s.store_format = 'mall' AND date_part('dow', t.ts) = 0 AND s.country = 'Belgium' THEN false
        WHEN s.store_format = 'mall' AND date_part('dow', t.ts) = 0 THEN date_part('hour', t.ts) BETWEEN 11 AND 18
        WHEN s.store_format = 'mall' THEN date_part('hour', t.ts) BETWEEN 10 AND 20
        WHEN s.store_format = 'high_street' AND date_part('dow', t.ts) = 0 THEN false
        WHEN s.store_format = 'high_street' THEN date_part('hour', t.ts) BETWEEN 9 AND 19
        WHEN s.store_format = 'outlet' THEN date_part('hour', t.ts) BETWEEN 10 AND 19
        WHEN s.store_format = 'airport' THEN date_part('hour', t.ts) BETWEEN 6 AND 21
        ELSE false
      END)";

#[tokio::test(flavor = "multi_thread")]
async fn demo_lake_has_the_promised_shape() {
    let dir = lake(Preset::Demo);
    let e = engine(&dir).await;

    // Places: at least 8 regions in at least 2 countries.
    assert!(scalar::<i64>(&e, "SELECT count(DISTINCT region) FROM lake.stores").await >= 8);
    assert!(scalar::<i64>(&e, "SELECT count(DISTINCT country) FROM lake.stores").await >= 2);

    // Every row is inside its store's opening hours, and there are rows on every format present.
    assert_eq!(scalar::<i64>(&e, HOURS_CHECK).await, 0, "rows outside opening hours");
    assert!(scalar::<i64>(&e, "SELECT count(*) FROM lake.traffic").await > 500_000);

    // No trading on Christmas, New Year's Day or May Day, except at airports.
    let holiday_rows = "SELECT count(*) FROM lake.traffic t JOIN lake.stores s USING (store_id)
        WHERE s.store_format <> 'airport' AND (
          (date_part('month', t.ts) = 12 AND date_part('day', t.ts) = 25) OR
          (date_part('month', t.ts) = 1 AND date_part('day', t.ts) = 1) OR
          (date_part('month', t.ts) = 5 AND date_part('day', t.ts) = 1))";
    assert_eq!(scalar::<i64>(&e, holiday_rows).await, 0);

    // Stores open and close inside the range, and trade only while open.
    let outside = "SELECT count(*) FROM lake.traffic t JOIN lake.stores s USING (store_id)
        WHERE CAST(t.ts AS DATE) < s.opened_on OR (s.closed_on IS NOT NULL AND CAST(t.ts AS DATE) >= s.closed_on)";
    assert_eq!(scalar::<i64>(&e, outside).await, 0, "rows while a store was not open");
    let opened_inside = "SELECT count(DISTINCT t.store_id) FROM lake.traffic t JOIN lake.stores s USING (store_id)
        WHERE s.opened_on > DATE '2024-01-01'";
    assert!(scalar::<i64>(&e, opened_inside).await >= 1, "a store opening inside the range trades after opening");
    let closed_inside = "SELECT count(*) FROM lake.stores WHERE closed_on BETWEEN DATE '2024-01-01' AND DATE '2025-12-31'";
    assert!(scalar::<i64>(&e, closed_inside).await >= 1);

    // Monthly partitions: one folder per month, and each row in its month's folder.
    let mut folders: Vec<String> = std::fs::read_dir(dir.join("traffic"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("month="))
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 24);
    assert_eq!(folders[0], "month=2024-01-01");
    assert_eq!(folders[23], "month=2025-12-01");
    assert_eq!(
        scalar::<i64>(&e, "SELECT count(*) FROM lake.traffic WHERE month <> CAST(date_trunc('month', ts) AS DATE)").await,
        0
    );

    // Conversion mostly between 10 % and 35 %, by department and format (sensor faults aside).
    let conv = rows(
        &e,
        "SELECT d.department, s.store_format, SUM(t.transactions) * 1.0 / SUM(t.footfall)
         FROM lake.traffic t JOIN lake.stores s USING (store_id) JOIN lake.departments d USING (department_id)
         WHERE t.footfall > 0 AND t.footfall < 2000 GROUP BY 1, 2",
    )
    .await;
    let within = conv.iter().filter(|r| (0.10..=0.35).contains(&r[2].parse::<f64>().unwrap())).count();
    assert!(within * 10 >= conv.len() * 8, "most conversions in 10–35 %: {conv:?}");
    let mut by_dept: Vec<f64> = rows(
        &e,
        "SELECT SUM(transactions) * 1.0 / SUM(footfall) AS c FROM lake.traffic WHERE footfall > 0 GROUP BY department_id",
    )
    .await
    .iter()
    .map(|r| r[0].parse().unwrap())
    .collect();
    by_dept.sort_by(f64::total_cmp);
    assert!(by_dept.last().unwrap() - by_dept[0] > 0.08, "conversion varies by department: {by_dept:?}");

    // Seasonality: December beats February, Black Friday beats the other Fridays of November.
    let per_day = |m: u32| {
        format!(
            "SELECT SUM(footfall) * 1.0 / count(DISTINCT CAST(ts AS DATE)) FROM lake.traffic WHERE date_part('month', ts) = {m}"
        )
    };
    let dec: f64 = scalar(&e, &per_day(12)).await;
    let feb: f64 = scalar(&e, &per_day(2)).await;
    assert!(dec > feb * 1.25, "December {dec} vs February {feb}");
    let bf: f64 = scalar(&e, "SELECT SUM(footfall) FROM lake.traffic WHERE CAST(ts AS DATE) = DATE '2025-11-28'").await;
    let other_fridays: f64 = scalar(
        &e,
        "SELECT SUM(footfall) / 3.0 FROM lake.traffic WHERE CAST(ts AS DATE) IN (DATE '2025-11-07', DATE '2025-11-14', DATE '2025-11-21')",
    )
    .await;
    assert!(bf > other_fridays * 1.6, "Black Friday {bf} vs other Fridays {other_fridays}");
    // Saturdays beat Tuesdays (weekday shape); lunch hour beats 10 am (hour shape).
    let dow = |d: u32| format!("SELECT SUM(footfall) FROM lake.traffic WHERE date_part('dow', ts) = {d}");
    assert!(scalar::<f64>(&e, &dow(6)).await > scalar::<f64>(&e, &dow(2)).await * 1.3);

    // Sensor faults at their known small rate: zero footfall while tickets were rung up.
    let zero_with_sales: f64 = scalar(
        &e,
        "SELECT SUM(CASE WHEN footfall = 0 AND transactions > 0 THEN 1 ELSE 0 END) * 1.0 / count(*) FROM lake.traffic",
    )
    .await;
    assert!((0.0008..0.004).contains(&zero_with_sales), "zero-footfall faults: {zero_with_sales}");
    let spikes: i64 = scalar(&e, "SELECT count(*) FROM lake.traffic WHERE footfall > 10 * transactions + 2000").await;
    assert!(spikes > 0, "implausible spikes exist");
}

/// Totals read straight from the Parquet files the Delta log lists, without lakecube or
/// DataFusion, must equal what `lakecube query` reports.
#[test]
fn totals_from_parquet_files_match_the_engine() {
    let dir = lake(Preset::Tiny);
    let table = dir.join("traffic");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(p) = v.get("add").and_then(|a| a.get("path")).and_then(|p| p.as_str()) {
                    files.push(table.join(p));
                }
            }
        }
    }
    assert!(files.len() >= 2, "one file per month at least: {files:?}");
    let mut sums: BTreeMap<&str, i128> = BTreeMap::new();
    let mut count = 0i128;
    for f in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            count += batch.num_rows() as i128;
            for col in ["footfall", "transactions", "units"] {
                let a = batch.column_by_name(col).unwrap().as_any().downcast_ref::<Int32Array>().unwrap();
                *sums.entry(col).or_default() += a.iter().map(|v| v.unwrap() as i128).sum::<i128>();
            }
            let rev = batch.column_by_name("revenue").unwrap().as_any().downcast_ref::<Decimal128Array>().unwrap();
            assert_eq!(rev.scale(), 2);
            *sums.entry("revenue_cents").or_default() += rev.iter().map(|v| v.unwrap()).sum::<i128>();
        }
    }
    let csv = query_csv(
        &dir,
        "SELECT count(*), SUM(footfall), SUM(transactions), SUM(units), CAST(SUM(revenue) * 100 AS BIGINT) FROM lake.traffic",
    );
    let line = csv.lines().nth(1).unwrap();
    let got: Vec<i128> = line.split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(got, vec![count, sums["footfall"], sums["transactions"], sums["units"], sums["revenue_cents"]]);
}
