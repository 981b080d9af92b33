SELECT date_trunc('month', t.ts) AS month, d.department, SUM(t.revenue),
  CAST(SUM(t.revenue) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.transactions) AS DOUBLE PRECISION), 0)
FROM traffic t JOIN stores s ON s.store_id = t.store_id JOIN departments d ON d.department_id = t.department_id WHERE s.region = 'Île-de-France' GROUP BY 1, 2 ORDER BY 1, 2
