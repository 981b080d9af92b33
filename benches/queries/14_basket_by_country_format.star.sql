SELECT s.country, s.store_format,
  CAST(SUM(t.revenue) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.transactions) AS DOUBLE PRECISION), 0),
  CAST(SUM(t.units) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.transactions) AS DOUBLE PRECISION), 0)
FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE t.ts >= TIMESTAMP '2025-01-01' GROUP BY 1, 2 ORDER BY 1, 2
