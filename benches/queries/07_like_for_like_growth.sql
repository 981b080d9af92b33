-- Like-for-like growth 2025 over 2024: only stores opened before 2024 with sales in both years.
WITH a AS (SELECT store_code, SUM(revenue) AS revenue FROM retail WHERE opened_on < '2024-01-01' AND period >= '2024-01-01' AND period < '2025-01-01' GROUP BY 1 HAVING SUM(transactions) > 0),
     b AS (SELECT store_code, SUM(revenue) AS revenue FROM retail WHERE opened_on < '2024-01-01' AND period >= '2025-01-01' AND period < '2026-01-01' GROUP BY 1 HAVING SUM(transactions) > 0)
SELECT COUNT(*) AS stores, SUM(a.revenue) AS revenue_2024, SUM(b.revenue) AS revenue_2025,
  CAST(SUM(b.revenue) AS DOUBLE PRECISION) / CAST(SUM(a.revenue) AS DOUBLE PRECISION) - 1 AS growth
FROM a JOIN b ON a.store_code = b.store_code
