SELECT region, c1 FROM (SELECT s.region, SUM(t.revenue) AS c1 FROM traffic t JOIN stores s ON s.store_id = t.store_id GROUP BY s.region) x WHERE c1 > 0 LIMIT 1000001
