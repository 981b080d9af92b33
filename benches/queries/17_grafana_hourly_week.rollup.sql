-- DuckDB over the rollup hourly_region's own Parquet files (benches/e2e/duck.py)
SELECT period_hour, SUM(footfall__sum)
FROM rollup_hourly_region WHERE period_hour BETWEEN TIMESTAMP '2025-12-01 00:00:00' AND TIMESTAMP '2025-12-07 23:59:59' GROUP BY 1 ORDER BY 1
