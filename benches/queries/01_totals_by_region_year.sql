-- Totals by region and year, with conversion (a ratio of sums).
SELECT region, EXTRACT(YEAR FROM period) AS year, SUM(footfall) AS footfall, SUM(transactions) AS transactions, SUM(revenue) AS revenue, SUM(conversion) AS conversion
FROM retail GROUP BY 1, 2 ORDER BY 1, 2
