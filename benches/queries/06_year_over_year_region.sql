-- Year over year by region: two grouped cube queries joined.
WITH y24 AS (SELECT region, SUM(revenue) AS revenue FROM retail WHERE period >= '2024-01-01' AND period < '2025-01-01' GROUP BY 1),
     y25 AS (SELECT region, SUM(revenue) AS revenue FROM retail WHERE period >= '2025-01-01' AND period < '2026-01-01' GROUP BY 1)
SELECT y25.region, y24.revenue AS revenue_2024, y25.revenue AS revenue_2025,
  CAST(y25.revenue AS DOUBLE PRECISION) / CAST(y24.revenue AS DOUBLE PRECISION) - 1 AS growth
FROM y25 JOIN y24 ON y24.region = y25.region ORDER BY 1
