-- Power BI's DirectQuery form: the cube query wrapped in a filtered subquery.
select "region", "C1" from (select "region", sum("revenue") as "C1" from "public"."retail" "_" group by "region") "_" where "C1" > 0 limit 1000001
