-- One store by day over 90 days.
SELECT CAST(period AS DATE) AS day, SUM(footfall) AS footfall, SUM(transactions) AS transactions, SUM(revenue) AS revenue
FROM retail WHERE store_code = 'FR-PAR-001' AND period >= '2025-01-01' AND period < '2025-04-01' GROUP BY 1 ORDER BY 1
