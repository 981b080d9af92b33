SELECT s.store_name, CAST(SUM(t.transactions) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.footfall) AS DOUBLE PRECISION), 0) AS conversion
FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE t.ts >= TIMESTAMP '2025-07-01' AND t.ts < TIMESTAMP '2025-10-01' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
