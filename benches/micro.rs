//! Criterion micro-benchmarks of the hot paths later work will tune:
//! - `planning/*`: SQL text → physical plan for cube queries, from scratch and from the plan
//!   cache, against an empty lake (no data read);
//! - `encode/*`: Arrow → PostgreSQL wire rows (`DataRow`s), text and binary, for a batch of
//!   8,192 rows shaped like `lake.traffic` joined to its store code;
//! - `scan/one_month`: a cube query over one month of the demo lake (partition pruning, Parquet
//!   decoding, aggregation), generated into a temporary folder first.
//!
//! Run: `cargo bench --bench micro` (or `-- planning` for one group). Figures in
//! docs/performance.md.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{ArrayRef, Decimal128Array, Int32Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use lakecube::datagen::{self, Preset};
use lakecube::engine::Engine;
use lakecube::frontend::encode::{encode_batch, field_infos};
use lakecube::storage::Lake;
use pgwire::api::results::FieldFormat;
use pgwire::api::portal::Format;

const PLANNED: &[(&str, &str)] = &[
    ("totals_by_region_year", "SELECT region, EXTRACT(YEAR FROM period) AS y, SUM(footfall), SUM(revenue), SUM(conversion) FROM retail GROUP BY 1, 2"),
    ("monthly_trend_department", "SELECT date_trunc('month', period) AS m, department, SUM(revenue), MEASURE(average_basket) FROM retail WHERE region = 'Île-de-France' GROUP BY 1, 2"),
    ("ungrouped_select_star", "SELECT * FROM retail LIMIT 1000"),
];

async fn engine_over(dir: &std::path::Path, preset: Option<Preset>) -> Engine {
    let lake = Lake::open(dir.to_str().unwrap(), true).unwrap();
    match preset {
        Some(p) => {
            datagen::generate(&lake, &p.params(), datagen::Options::default()).await.unwrap();
        }
        None => datagen::create_empty(&lake).await.unwrap(),
    }
    let model = lakecube::model::load_dir(std::path::Path::new("cube-defs")).unwrap();
    Engine::open(Lake::open(dir.to_str().unwrap(), false).unwrap(), Some(&model)).await.unwrap()
}

fn planning(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cached = rt.block_on(engine_over(dir.path(), None));
    let fresh = cached.clone().with_plan_cache(0);
    let mut g = c.benchmark_group("planning");
    for (name, sql) in PLANNED {
        for (mode, engine) in [("uncached", &fresh), ("cached", &cached)] {
            g.bench_with_input(BenchmarkId::new(*name, mode), sql, |b, sql| {
                b.to_async(&rt).iter(|| async {
                    let p = engine.plan_with_cubes(sql).await.unwrap();
                    engine.physical_plan(&p.plan, p.optimized).await.unwrap()
                })
            });
        }
    }
    g.finish();
}

/// 8,192 rows like `SELECT store_code, department_id, ts, footfall, transactions, revenue, units`.
fn traffic_batch() -> RecordBatch {
    let n = 8192;
    let schema = Arc::new(Schema::new(vec![
        Field::new("store_code", DataType::Utf8, false),
        Field::new("department_id", DataType::Int32, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("footfall", DataType::Int32, false),
        Field::new("transactions", DataType::Int32, false),
        Field::new("revenue", DataType::Decimal128(12, 2), false),
        Field::new("units", DataType::Int32, false),
    ]));
    let i = |f: fn(i32) -> i32| Arc::new(Int32Array::from_iter_values((0..n).map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..n).map(|k| format!("FR-PAR-{:03}", k % 25 + 1)))),
        i(|k| k % 10 + 1),
        Arc::new(TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|k| 1_735_689_600_000_000 + k * 3_600_000_000))),
        i(|k| 40 + k % 97),
        i(|k| 9 + k % 31),
        Arc::new(Decimal128Array::from_iter_values((0..n as i128).map(|k| 100_000 + k * 37 % 900_000)).with_precision_and_scale(12, 2).unwrap()),
        i(|k| 20 + k % 53),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn encoding(c: &mut Criterion) {
    let batch = traffic_batch();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    for (mode, format) in [("text", Format::UnifiedText), ("binary", Format::UnifiedBinary)] {
        let fields = Arc::new(field_infos(&batch.schema(), &format));
        assert!(fields.iter().all(|f| f.format() == if mode == "text" { FieldFormat::Text } else { FieldFormat::Binary }));
        g.bench_function(mode, |b| b.iter(|| encode_batch(&batch, &fields).unwrap()));
    }
    g.finish();
}

fn scan(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = rt.block_on(engine_over(dir.path(), Some(Preset::Demo)));
    let sql = "SELECT department, SUM(footfall), SUM(revenue), SUM(conversion) FROM retail \
               WHERE period >= '2025-06-01' AND period < '2025-07-01' GROUP BY 1";
    let mut g = c.benchmark_group("scan");
    g.bench_function("one_month", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, mut stream) = engine.sql(sql).await.unwrap();
            let mut rows = 0;
            while let Some(batch) = stream.next().await {
                rows += batch.unwrap().num_rows();
            }
            assert_eq!(rows, 8, "one row per department of the demo lake");
        })
    });
    g.finish();
}

criterion_group!(benches, planning, encoding, scan);
criterion_main!(benches);
