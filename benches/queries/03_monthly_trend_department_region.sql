-- Monthly trend per department in one region, with average basket.
SELECT date_trunc('month', period) AS month, department, SUM(revenue) AS revenue, MEASURE(average_basket) AS average_basket
FROM retail WHERE region = 'Île-de-France' GROUP BY 1, 2 ORDER BY 1, 2
