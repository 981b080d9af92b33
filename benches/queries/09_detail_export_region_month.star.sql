SELECT s.store_code, d.department, t.ts, t.footfall, t.transactions, t.revenue, t.units
FROM traffic t JOIN stores s ON s.store_id = t.store_id JOIN departments d ON d.department_id = t.department_id WHERE s.region = 'Île-de-France' AND t.ts >= TIMESTAMP '2025-06-01' AND t.ts < TIMESTAMP '2025-07-01' ORDER BY 1, 2, 3
