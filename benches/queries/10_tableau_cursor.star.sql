SELECT s.store_name, CAST(date_trunc('day', t.ts) AS DATE), SUM(t.footfall)
FROM traffic t JOIN stores s ON s.store_id = t.store_id WHERE s.region = 'Cataluña' GROUP BY 1, 2
