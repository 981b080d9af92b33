WITH y24 AS (SELECT s.region, SUM(t.revenue) AS revenue FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE t.ts >= TIMESTAMP '2024-01-01' AND t.ts < TIMESTAMP '2025-01-01' GROUP BY 1),
     y25 AS (SELECT s.region, SUM(t.revenue) AS revenue FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE t.ts >= TIMESTAMP '2025-01-01' AND t.ts < TIMESTAMP '2026-01-01' GROUP BY 1)
SELECT y25.region, y24.revenue, y25.revenue, CAST(y25.revenue AS DOUBLE PRECISION) / CAST(y24.revenue AS DOUBLE PRECISION) - 1
FROM y25 JOIN y24 ON y24.region = y25.region ORDER BY 1
