// Metabase's PostgreSQL sync and a question, replayed through pgjdbc (the driver Metabase
// ships) from Metabase's public source (src/metabase/driver/postgres.clj and its sql-jdbc
// sync): the per-connection settings, getSchemas, the table-privileges CTE, the table list,
// the field list (information_schema ⋈ PK constraints, `format('%I.%I')::regclass::oid` for
// column comments), the foreign-key and enum queries, then a question with setMaxRows as
// Metabase runs it. Exits non-zero on the first mismatch.
// Usage: java -cp postgresql.jar:. MetabaseSync <port>
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class MetabaseSync {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        System.out.println("ok: " + what);
    }

    static final String TABLE_PRIVILEGES = """
        with table_privileges as (
         select
           NULL as role,
           t.schemaname as schema,
           t.objectname as table,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
           pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
         from (
           select schemaname, tablename as objectname from pg_catalog.pg_tables
           union
           select schemaname, viewname as objectname from pg_catalog.pg_views
           union
           select schemaname, matviewname as objectname from pg_catalog.pg_matviews
         ) t
         where t.schemaname !~ '^pg_'
           and t.schemaname <> 'information_schema'
           and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
        )
        select t.*
        from table_privileges t""";

    static final String TABLES = "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' "
        + "WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS \"type\", "
        + "\"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS \"estimated_row_count\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" "
        + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" "
        + "ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = 0) AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" "
        + "ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND (\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") "
        + "AND (\"n\".\"nspname\" !~ '^pg_') AND (\"n\".\"nspname\" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') "
        + "AND (\"n\".\"nspname\" IN (?, ?)) ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC";

    static final String FIELDS = "SELECT \"c\".\"column_name\" AS \"name\", CASE WHEN \"c\".\"udt_schema\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"c\".\"udt_name\") "
        + "ELSE FORMAT('\"%s\".\"%s\"', \"c\".\"udt_schema\", \"c\".\"udt_name\") END AS \"database-type\", \"c\".\"ordinal_position\" - 1 AS \"database-position\", "
        + "\"c\".\"table_schema\" AS \"table-schema\", \"c\".\"table_name\" AS \"table-name\", \"pk\".\"column_name\" IS NOT NULL AS \"pk?\", "
        + "COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(\"c\".\"table_schema\" AS TEXT), CAST(\"c\".\"table_name\" AS TEXT)) AS REGCLASS) AS OID), \"c\".\"ordinal_position\") AS \"field-comment\", "
        + "((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') AND NOT (((\"column_default\" IS NOT NULL) "
        + "AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO')) AS \"database-required\", ((\"column_default\" IS NOT NULL) "
        + "AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\" FROM \"information_schema\".\"columns\" AS \"c\" "
        + "LEFT JOIN (SELECT \"tc\".\"table_schema\", \"tc\".\"table_name\", \"kc\".\"column_name\" FROM \"information_schema\".\"table_constraints\" AS \"tc\" "
        + "INNER JOIN \"information_schema\".\"key_column_usage\" AS \"kc\" ON (\"tc\".\"constraint_name\" = \"kc\".\"constraint_name\") "
        + "AND (\"tc\".\"table_schema\" = \"kc\".\"table_schema\") AND (\"tc\".\"table_name\" = \"kc\".\"table_name\") WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" "
        + "ON (\"c\".\"table_schema\" = \"pk\".\"table_schema\") AND (\"c\".\"table_name\" = \"pk\".\"table_name\") AND (\"c\".\"column_name\" = \"pk\".\"column_name\") "
        + "WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"table_schema\" IN (?)) "
        + "UNION ALL SELECT \"pa\".\"attname\" AS \"name\", CASE WHEN \"ptn\".\"nspname\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"pt\".\"typname\") "
        + "ELSE FORMAT('\"%s\".\"%s\"', \"ptn\".\"nspname\", \"pt\".\"typname\") END AS \"database-type\", \"pa\".\"attnum\" - 1 AS \"database-position\", "
        + "\"pn\".\"nspname\" AS \"table-schema\", \"pc\".\"relname\" AS \"table-name\", FALSE AS \"pk?\", NULL AS \"field-comment\", FALSE AS \"database-required\", "
        + "FALSE AS \"database-is-auto-increment\" FROM \"pg_catalog\".\"pg_class\" AS \"pc\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"pn\" ON \"pn\".\"oid\" = \"pc\".\"relnamespace\" "
        + "INNER JOIN \"pg_catalog\".\"pg_attribute\" AS \"pa\" ON \"pa\".\"attrelid\" = \"pc\".\"oid\" INNER JOIN \"pg_catalog\".\"pg_type\" AS \"pt\" ON \"pt\".\"oid\" = \"pa\".\"atttypid\" "
        + "INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"ptn\" ON \"ptn\".\"oid\" = \"pt\".\"typnamespace\" WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) "
        + "AND (\"pn\".\"nspname\" IN (?)) ORDER BY \"table-schema\" ASC, \"table-name\" ASC, \"database-position\" ASC";

    static final String FKS = "SELECT \"fk_ns\".\"nspname\" AS \"fk-table-schema\", \"fk_table\".\"relname\" AS \"fk-table-name\", \"fk_column\".\"attname\" AS \"fk-column-name\", "
        + "\"pk_ns\".\"nspname\" AS \"pk-table-schema\", \"pk_table\".\"relname\" AS \"pk-table-name\", \"pk_column\".\"attname\" AS \"pk-column-name\" FROM \"pg_constraint\" AS \"c\" "
        + "INNER JOIN \"pg_class\" AS \"fk_table\" ON \"c\".\"conrelid\" = \"fk_table\".\"oid\" INNER JOIN \"pg_namespace\" AS \"fk_ns\" ON \"c\".\"connamespace\" = \"fk_ns\".\"oid\" "
        + "INNER JOIN \"pg_attribute\" AS \"fk_column\" ON \"c\".\"conrelid\" = \"fk_column\".\"attrelid\" INNER JOIN \"pg_class\" AS \"pk_table\" ON \"c\".\"confrelid\" = \"pk_table\".\"oid\" "
        + "INNER JOIN \"pg_namespace\" AS \"pk_ns\" ON \"pk_table\".\"relnamespace\" = \"pk_ns\".\"oid\" INNER JOIN \"pg_attribute\" AS \"pk_column\" ON \"c\".\"confrelid\" = \"pk_column\".\"attrelid\" "
        + "WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"contype\" = 'f'::char) AND (\"fk_column\".\"attnum\" = ANY(c.conkey)) "
        + "AND (\"pk_column\".\"attnum\" = ANY(c.confkey)) AND (\"fk_ns\".\"nspname\" IN (?)) ORDER BY \"fk-table-schema\" ASC, \"fk-table-name\" ASC";

    static final String ENUMS = "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        + "WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)";

    // A question as Metabase's query processor writes it: sum of revenue by region.
    static final String QUESTION = "SELECT \"public\".\"retail\".\"region\" AS \"region\", SUM(\"public\".\"retail\".\"revenue\") AS \"sum\" "
        + "FROM \"public\".\"retail\" GROUP BY \"public\".\"retail\".\"region\" ORDER BY \"public\".\"retail\".\"region\" ASC";

    static List<List<String>> rows(Connection c, String sql, String... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) ps.setString(i + 1, params[i]);
            List<List<String>> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    List<String> row = new ArrayList<>();
                    for (int k = 1; k <= n; k++) row.add(rs.getString(k));
                    out.add(row);
                }
            }
            return out;
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/lakecube?user=lakecube&ApplicationName=Metabase";
        try (Connection c = DriverManager.getConnection(url)) {
            // Per checkout (sql-jdbc execute): isolation, session time zone, read-only.
            try (Statement s = c.createStatement()) {
                s.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED");
                s.execute("SET SESSION TIMEZONE TO 'UTC';");
            }
            c.setReadOnly(true);
            check("UTC".equals(rows(c, "show timezone;").get(0).get(0)), "show timezone");

            Set<String> schemas = new TreeSet<>();
            try (ResultSet rs = c.getMetaData().getSchemas()) { while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM")); }
            check(schemas.containsAll(List.of("lake", "public")), "getSchemas: " + schemas);

            // Tables without a true `select` privilege are hidden by Metabase.
            Map<String, List<String>> privileges = new TreeMap<>();
            for (List<String> r : rows(c, TABLE_PRIVILEGES)) privileges.put(r.get(1) + "." + r.get(2), r.subList(3, 7));
            check(privileges.keySet().equals(Set.of("lake.departments", "lake.stores", "lake.traffic", "public.retail")), "privilege CTE lists: " + privileges.keySet());
            check(privileges.values().stream().allMatch(p -> p.equals(List.of("f", "t", "f", "f"))), "select only: " + privileges);

            List<String> tables = new ArrayList<>();
            for (List<String> r : rows(c, TABLES, "public", "lake")) tables.add(r.get(2) + " " + r.get(0) + "." + r.get(1));
            check(tables.equals(List.of("TABLE lake.departments", "TABLE lake.stores", "TABLE lake.traffic", "VIEW public.retail")), "table list: " + tables);

            Map<String, String> types = new LinkedHashMap<>();
            Map<String, String> comments = new HashMap<>();
            for (List<String> r : rows(c, FIELDS, "public", "public")) {
                if (!"retail".equals(r.get(4))) continue;
                types.put(r.get(0), r.get(1));
                comments.put(r.get(0), r.get(6));
            }
            check("numeric".equals(types.get("revenue")) && "timestamp".equals(types.get("period")) && "text".equals(types.get("region"))
                && "float8".equals(types.get("conversion")), "field types: " + types);
            check(comments.values().stream().allMatch(d -> d != null && !d.isEmpty()), "every field has its description as comment");
            check(new ArrayList<>(types.keySet()).indexOf("period") == 0, "fields in ordinal order");

            check(rows(c, FKS, "public").isEmpty(), "no foreign keys");
            check(rows(c, ENUMS).isEmpty(), "no enum types");

            Map<String, BigDecimal> raw = new TreeMap<>();
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                    "SELECT s.region, SUM(t.revenue) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY s.region")) {
                while (rs.next()) raw.put(rs.getString(1), rs.getBigDecimal(2));
            }
            // Metabase caps every question with setMaxRows (an Execute row limit).
            Map<String, BigDecimal> cube = new TreeMap<>();
            try (PreparedStatement ps = c.prepareStatement(QUESTION)) {
                ps.setMaxRows(2000);
                try (ResultSet rs = ps.executeQuery()) { while (rs.next()) cube.put(rs.getString("region"), rs.getBigDecimal("sum")); }
            }
            check(!cube.isEmpty() && cube.keySet().equals(raw.keySet()), "question regions: " + cube.keySet());
            for (String region : raw.keySet()) check(cube.get(region).compareTo(raw.get(region)) == 0, "revenue of " + region + " = lake's " + raw.get(region));
        }
        System.out.println("metabase: all checks passed");
    }
}
