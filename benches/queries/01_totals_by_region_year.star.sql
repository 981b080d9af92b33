SELECT s.region, EXTRACT(YEAR FROM t.ts) AS year, SUM(t.footfall), SUM(t.transactions), SUM(t.revenue),
  CAST(SUM(t.transactions) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.footfall) AS DOUBLE PRECISION), 0)
FROM traffic t JOIN stores s ON s.store_id = t.store_id GROUP BY 1, 2 ORDER BY 1, 2
