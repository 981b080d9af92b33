// pgjdbc's DatabaseMetaData as a restricted user (issue 17): what DBeaver, DataGrip, Metabase
// and Tableau's JDBC path list for a franchise partner is what their policy gives them: no
// `lake` schema, the `retail` view without revenue (nor what is computed from it), their
// store's rows only. Exits non-zero on the first mismatch.
// Usage: java -cp postgresql.jar:. RestrictedMetadata <port> <user> <password> <store>
import java.sql.*;
import java.util.*;

public class RestrictedMetadata {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/lakecube";
        Set<String> hidden = Set.of("revenue", "average_basket", "sales_per_visitor");
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            Set<String> schemas = new TreeSet<>();
            try (ResultSet rs = md.getSchemas()) { while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM")); }
            check(schemas.contains("public") && !schemas.contains("lake"), "getSchemas without lake: " + schemas);

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
            }
            check(tables.equals(List.of("public.retail")), "getTables: " + tables);
            try (ResultSet rs = md.getTables(null, "lake", "%", null)) { check(!rs.next(), "getTables in lake: none"); }

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "retail", "%")) { while (rs.next()) columns.add(rs.getString("COLUMN_NAME")); }
            check(columns.contains("footfall") && Collections.disjoint(columns, hidden), "getColumns without hidden members: " + columns);
            try (ResultSet rs = md.getColumns(null, "public", "retail", "revenue")) { check(!rs.next(), "getColumns(revenue): none"); }

            Set<String> privileges = new TreeSet<>();
            try (ResultSet rs = md.getTablePrivileges(null, null, "%")) {
                while (rs.next()) privileges.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("PRIVILEGE"));
            }
            check(privileges.stream().noneMatch(p -> p.startsWith("lake.")), "getTablePrivileges lists no lake table: " + privileges);

            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT * FROM retail LIMIT 1")) {
                ResultSetMetaData rmd = rs.getMetaData();
                List<String> names = new ArrayList<>();
                for (int i = 1; i <= rmd.getColumnCount(); i++) names.add(rmd.getColumnName(i));
                check(names.equals(columns), "SELECT * has the listed columns: " + names);
            }
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT DISTINCT store_code FROM retail WHERE store_code <> ?")) {
                ps.setFetchSize(1);
                ps.setString(1, "none");
                List<String> stores = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) { while (rs.next()) stores.add(rs.getString(1)); }
                check(stores.equals(List.of(args[3])), "a prepared statement read through a portal: " + stores);
            }
            c.commit();
        }
        System.out.println("RestrictedMetadata: all checks passed");
    }
}
