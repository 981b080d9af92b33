SELECT d.department_family, EXTRACT(DOW FROM t.ts) AS dow,
  CAST(SUM(t.revenue) AS DOUBLE PRECISION) / NULLIF(CAST(SUM(t.footfall) AS DOUBLE PRECISION), 0)
FROM traffic t JOIN departments d ON d.department_id = t.department_id GROUP BY 1, 2 ORDER BY 1, 2
