-- DuckDB over the rollup daily_department's own Parquet files (benches/e2e/duck.py)
SELECT d.department_family, EXTRACT(DOW FROM r.period_day),
  CAST(SUM(r.revenue__sum) AS DOUBLE) / NULLIF(CAST(SUM(r.footfall__sum) AS DOUBLE), 0)
FROM rollup_daily_department r JOIN departments d ON d.department_id = r.department_id GROUP BY 1, 2 ORDER BY 1, 2
