// pgjdbc side of benches/wire/run.py: SELECT 1 round trips (p50, p95 in ms) and rows/s reading
// a whole table with setFetchSize (autocommit off, every column read). Prints one JSON line.
// Usage: java -cp postgresql.jar:. WireBench <port> <user> <table> <pings> <runs>
import java.sql.*;
import java.util.*;

public class WireBench {
    public static void main(String[] a) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + a[0] + "/" + a[1] + "?user=" + a[1];
        String table = a[2];
        int pings = Integer.parseInt(a[3]), runs = Integer.parseInt(a[4]);
        double[] ms = new double[pings];
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement s = c.createStatement()) {
                for (int i = 0; i < Math.max(50, pings / 10); i++) try (ResultSet rs = s.executeQuery("SELECT 1")) { rs.next(); }
                for (int i = 0; i < pings; i++) {
                    long t = System.nanoTime();
                    try (ResultSet rs = s.executeQuery("SELECT 1")) { rs.next(); }
                    ms[i] = (System.nanoTime() - t) / 1e6;
                }
            }
            Arrays.sort(ms);
            c.setAutoCommit(false);
            double[] rates = new double[runs];
            long rows = 0;
            for (int r = 0; r < runs; r++) {
                long t = System.nanoTime(), n = 0, check = 0;
                try (Statement s = c.createStatement()) {
                    s.setFetchSize(10000);
                    try (ResultSet rs = s.executeQuery("SELECT store_id, department_id, ts, footfall, transactions, revenue, units, month FROM " + table)) {
                        while (rs.next()) {
                            check += rs.getInt(1) + rs.getInt(2) + rs.getTimestamp(3).getNanos() + rs.getInt(4) + rs.getInt(5)
                                + rs.getBigDecimal(6).signum() + rs.getInt(7) + rs.getDate(8).getDate();
                            n++;
                        }
                    }
                }
                c.commit();
                rates[r] = n / ((System.nanoTime() - t) / 1e9);
                rows = n;
                if (check == 42) System.err.println("");
            }
            Arrays.sort(rates);
            System.out.printf(Locale.ROOT, "{\"p50\": %.4f, \"p95\": %.4f, \"rows_per_s\": %.1f, \"rows\": %d}%n",
                ms[(int) Math.round(0.50 * (pings - 1))], ms[(int) Math.round(0.95 * (pings - 1))], rates[runs / 2], rows);
        }
    }
}
