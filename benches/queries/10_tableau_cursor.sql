-- cursor
-- Tableau's cursor read: DECLARE … CURSOR FOR its query, then FETCH 2048 until empty.
SELECT "retail"."store" AS "store", CAST(DATE_TRUNC('DAY', "retail"."period") AS DATE) AS "tdy:period:ok", SUM("retail"."footfall") AS "sum:footfall:ok"
FROM "public"."retail" "retail" WHERE ("retail"."region" = 'Cataluña') GROUP BY 1, 2
