-- DuckDB over the rollup monthly_store's own Parquet files (benches/e2e/duck.py): the
-- distinct store-hours of each store and month, as lakecube answers it there. A row's set
-- holds one store's hours of one month, so the sets are disjoint (lakecube checks it at the
-- build) and the distinct count is the sum of their stored sizes.
SELECT s.store_code, r.period_month, SUM(r.trading_hours__size)
FROM rollup_monthly_store r JOIN stores s ON s.store_id = r.store_id WHERE s.country = 'Belgium' GROUP BY 1, 2 ORDER BY 1, 2
