-- Distinct stores trading per region and month (a count-distinct measure).
SELECT region, date_trunc('month', period) AS month, MEASURE(store_count) AS stores
FROM retail GROUP BY 1, 2 ORDER BY 1, 2
