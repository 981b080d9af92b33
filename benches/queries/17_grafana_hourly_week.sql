-- Grafana's time series: footfall per hour over one week.
SELECT date_trunc('hour', period) AS "time", SUM(footfall) AS footfall
FROM retail WHERE period BETWEEN '2025-12-01 00:00:00' AND '2025-12-07 23:59:59' GROUP BY 1 ORDER BY 1
