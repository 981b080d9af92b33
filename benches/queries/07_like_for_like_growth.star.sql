WITH a AS (SELECT s.store_code, SUM(t.revenue) AS revenue FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE s.opened_on < DATE '2024-01-01' AND t.ts >= TIMESTAMP '2024-01-01' AND t.ts < TIMESTAMP '2025-01-01' GROUP BY 1 HAVING SUM(t.transactions) > 0),
     b AS (SELECT s.store_code, SUM(t.revenue) AS revenue FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE s.opened_on < DATE '2024-01-01' AND t.ts >= TIMESTAMP '2025-01-01' AND t.ts < TIMESTAMP '2026-01-01' GROUP BY 1 HAVING SUM(t.transactions) > 0)
SELECT COUNT(*), SUM(a.revenue), SUM(b.revenue), CAST(SUM(b.revenue) AS DOUBLE PRECISION) / CAST(SUM(a.revenue) AS DOUBLE PRECISION) - 1
FROM a JOIN b ON a.store_code = b.store_code
