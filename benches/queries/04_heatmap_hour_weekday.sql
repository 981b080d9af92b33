-- Hour of day × day of week heatmap of footfall.
SELECT EXTRACT(DOW FROM period) AS dow, EXTRACT(HOUR FROM period) AS hour, SUM(footfall) AS footfall
FROM retail GROUP BY 1, 2 ORDER BY 1, 2
