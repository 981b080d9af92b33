-- Sales per visitor by department family and day of week.
SELECT department_family, EXTRACT(DOW FROM period) AS dow, SUM(sales_per_visitor) AS sales_per_visitor
FROM retail GROUP BY 1, 2 ORDER BY 1, 2
