SELECT EXTRACT(DOW FROM t.ts) AS dow, EXTRACT(HOUR FROM t.ts) AS hour, SUM(t.footfall)
FROM traffic t GROUP BY 1, 2 ORDER BY 1, 2
