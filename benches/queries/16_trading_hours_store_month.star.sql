SELECT s.store_code, date_trunc('month', t.ts) AS month, COUNT(DISTINCT t.ts)
FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE s.country = 'Belgium' GROUP BY 1, 2 ORDER BY 1, 2
