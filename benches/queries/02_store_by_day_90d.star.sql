SELECT CAST(t.ts AS DATE) AS day, SUM(t.footfall), SUM(t.transactions), SUM(t.revenue)
FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE s.store_code = 'FR-PAR-001' AND t.ts >= TIMESTAMP '2025-01-01' AND t.ts < TIMESTAMP '2025-04-01' GROUP BY 1 ORDER BY 1
