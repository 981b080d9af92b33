-- DuckDB over the rollup monthly_store's own Parquet files (benches/e2e/duck.py)
SELECT s.store_name, CAST(SUM(r.transactions__sum) AS DOUBLE) / NULLIF(CAST(SUM(r.footfall__sum) AS DOUBLE), 0) AS conversion
FROM rollup_monthly_store r JOIN stores s ON s.store_id = r.store_id
WHERE r.period_month >= TIMESTAMP '2025-07-01' AND r.period_month < TIMESTAMP '2025-10-01' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
