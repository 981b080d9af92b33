-- DuckDB over the rollup monthly_store's own Parquet files (benches/e2e/duck.py): the
-- distinct store-hours of each store and month, from the stored sets
SELECT s.store_code, r.period_month, length(list_distinct(flatten(list(r.trading_hours__set))))
FROM rollup_monthly_store r JOIN stores s ON s.store_id = r.store_id WHERE s.country = 'Belgium' GROUP BY 1, 2 ORDER BY 1, 2
