// pgjdbc (Debian's libpostgresql-jdbc-java) against a lakecube server: what Tableau's JDBC
// path, DBeaver, DataGrip and Metabase do through it. Exits non-zero on the first mismatch.
// Usage: java -cp postgresql.jar:. JdbcClient <port>
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/lakecube?user=lakecube";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseMajorVersion() == 15, "server version 15: " + md.getDatabaseProductVersion());

            Set<String> schemas = new TreeSet<>();
            try (ResultSet rs = md.getSchemas()) { while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM")); }
            check(schemas.containsAll(List.of("lake", "public")), "getSchemas lists lake and public: " + schemas);

            Map<String, String> tables = new TreeMap<>();
            try (ResultSet rs = md.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.put(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
            }
            check("VIEW".equals(tables.get("public.retail")) && "TABLE".equals(tables.get("lake.traffic")), "getTables: " + tables);

            Map<String, String> columns = new LinkedHashMap<>();
            String revenueRemark = null;
            try (ResultSet rs = md.getColumns(null, "public", "retail", "%")) {
                while (rs.next()) {
                    columns.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
                    if ("revenue".equals(rs.getString("COLUMN_NAME"))) revenueRemark = rs.getString("REMARKS");
                }
            }
            check("numeric".equals(columns.get("revenue")) && "float8".equals(columns.get("conversion"))
                    && "timestamp".equals(columns.get("period")) && "text".equals(columns.get("region")), "getColumns types: " + columns);
            check(revenueRemark != null && !revenueRemark.isEmpty(), "getColumns remarks carry descriptions: " + revenueRemark);

            try (ResultSet rs = md.getPrimaryKeys(null, "lake", "traffic")) { check(!rs.next(), "getPrimaryKeys: none"); }
            try (ResultSet rs = md.getImportedKeys(null, "lake", "traffic")) { check(!rs.next(), "getImportedKeys: none"); }
            int types = 0;
            try (ResultSet rs = md.getTypeInfo()) { while (rs.next()) types++; }
            check(types > 20, "getTypeInfo: " + types + " types");
            try (ResultSet rs = md.getFunctions(null, "public", "%")) { while (rs.next()) {} }
            check(true, "getFunctions runs");

            // A prepared statement run more than prepareThreshold (5) times: pgjdbc then
            // switches to a named statement and binary results.
            Map<String, BigDecimal> raw = new HashMap<>();
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                    "SELECT s.region, SUM(t.revenue) FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY s.region")) {
                while (rs.next()) raw.put(rs.getString(1), rs.getBigDecimal(2));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT SUM(revenue), SUM(footfall), MEASURE(conversion), COUNT(DISTINCT store_count) FROM retail WHERE region = ? AND period >= ?")) {
                int i = 0;
                for (String region : new TreeSet<>(raw.keySet())) {
                    if (i++ == 7) break;
                    ps.setString(1, region);
                    ps.setTimestamp(2, Timestamp.valueOf("2000-01-01 00:00:00"));
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        check(rs.getBigDecimal(1).compareTo(raw.get(region)) == 0, "prepared run " + i + " for " + region + " = " + raw.get(region));
                    }
                }
            }

            // setFetchSize with autocommit off: the whole lake.traffic streams in pages.
            long expected;
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM lake.traffic")) { rs.next(); expected = rs.getLong(1); }
            c.setAutoCommit(false);
            long n = 0, footfall = 0;
            try (Statement s = c.createStatement()) {
                s.setFetchSize(1000);
                try (ResultSet rs = s.executeQuery("SELECT store_id, ts, footfall FROM lake.traffic")) {
                    while (rs.next()) { n++; footfall += rs.getInt(3); }
                }
            }
            c.commit();
            long expectedFootfall;
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT SUM(footfall) FROM lake.traffic")) { rs.next(); expectedFootfall = rs.getLong(1); }
            check(n == expected && footfall == expectedFootfall, "fetchSize streamed " + n + " rows of " + expected);
            c.setAutoCommit(true);

            // setMaxRows: Metabase's row limit, on the unnamed portal.
            try (Statement s = c.createStatement()) {
                s.setMaxRows(10);
                int k = 0;
                try (ResultSet rs = s.executeQuery("SELECT * FROM lake.traffic")) { while (rs.next()) k++; }
                check(k == 10, "setMaxRows(10) returned " + k);
            }
            c.setReadOnly(true);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) { rs.next(); }
            check(true, "read-only connection");
        }
        System.out.println("pgjdbc: all checks passed");
    }
}
