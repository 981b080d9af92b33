-- DuckDB over the rollup daily_store's own Parquet files (benches/e2e/duck.py)
SELECT CAST(r.period_day AS DATE), SUM(r.footfall__sum), SUM(r.transactions__sum), SUM(r.revenue__sum)
FROM rollup_daily_store r JOIN stores s ON s.store_id = r.store_id
WHERE s.store_code = 'FR-PAR-001' AND r.period_day >= TIMESTAMP '2025-01-01' AND r.period_day < TIMESTAMP '2025-04-01' GROUP BY 1 ORDER BY 1
