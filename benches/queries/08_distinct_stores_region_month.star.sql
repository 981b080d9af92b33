SELECT s.region, date_trunc('month', t.ts) AS month, COUNT(DISTINCT t.store_id)
FROM traffic t JOIN stores s ON s.store_id = t.store_id GROUP BY 1, 2 ORDER BY 1, 2
