-- Top 10 stores by conversion in a quarter.
SELECT store, SUM(conversion) AS conversion
FROM retail WHERE period >= '2025-07-01' AND period < '2025-10-01' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10
