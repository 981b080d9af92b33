-- Trading hours (distinct store-hours) per store and month in one country.
SELECT store_code, date_trunc('month', period) AS month, MEASURE(trading_hours) AS trading_hours
FROM retail WHERE country = 'Belgium' GROUP BY 1, 2 ORDER BY 1, 2
