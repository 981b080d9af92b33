-- DuckDB over the rollup hourly_region's own Parquet files (benches/e2e/duck.py)
SELECT EXTRACT(DOW FROM period_hour), EXTRACT(HOUR FROM period_hour), SUM(footfall__sum)
FROM rollup_hourly_region GROUP BY 1, 2 ORDER BY 1, 2
