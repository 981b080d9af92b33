-- Average basket and units per transaction by country and store format, this year.
SELECT country, store_format, MEASURE(average_basket) AS average_basket, MEASURE(units_per_transaction) AS units_per_transaction
FROM retail WHERE period >= '2025-01-01' GROUP BY 1, 2 ORDER BY 1, 2
