-- An ungrouped preview: measures at the grain of the selected dimensions, first 1000 rows.
SELECT store_code, department, period, footfall, revenue FROM retail ORDER BY period DESC, store_code, department LIMIT 1000
