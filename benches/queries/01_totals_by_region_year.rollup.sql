-- DuckDB over the rollup monthly_region_department's own Parquet files (benches/e2e/duck.py)
SELECT stores__region, EXTRACT(YEAR FROM period_month), SUM(footfall__sum), SUM(transactions__sum), SUM(revenue__sum),
  CAST(SUM(transactions__sum) AS DOUBLE) / NULLIF(CAST(SUM(footfall__sum) AS DOUBLE), 0)
FROM rollup_monthly_region_department GROUP BY 1, 2 ORDER BY 1, 2
