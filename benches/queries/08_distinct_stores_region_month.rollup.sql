-- DuckDB over the rollup monthly_region_department's own Parquet files (benches/e2e/duck.py):
-- the distinct stores of each region and month, from the stored sets
SELECT stores__region, period_month, length(list_distinct(flatten(list(store_count__set))))
FROM rollup_monthly_region_department GROUP BY 1, 2 ORDER BY 1, 2
