-- Full-detail export of one region for one month (ungrouped: every store, department and hour).
SELECT store_code, department, period, footfall, transactions, revenue, units
FROM retail WHERE region = 'Île-de-France' AND period >= '2025-06-01' AND period < '2025-07-01' ORDER BY 1, 2, 3
