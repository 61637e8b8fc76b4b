// pgjdbc through torpor over TLS, verifying torpor's certificate against the test's CA
// (sslmode=verify-full, the CA's PEM file as sslrootcert), with its state kept across a sleep.
//
// Run by tests/tests/pg_tls_clients.rs as `PgTlsJdbc kept` or `PgTlsJdbc refused` with
// TORPOR_JDBC_URL (host localhost, the TLS parameters in it), PGUSER and PGPASSWORD set.
//
// kept: makes a temp table and a SET, prints "parked" and waits for "go" on stdin while the test
// puts the database to sleep, then checks both on the new server. Prints "jdbc tls ok".
// refused: the URL names another CA; the connection must fail its certificate check. Prints
// "jdbc tls refused ok".
// A non-zero exit (an AssertionError or a driver error) otherwise.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class PgTlsJdbc {
    static final String URL = System.getenv("TORPOR_JDBC_URL");

    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "kept" -> kept();
            case "refused" -> refused();
            default -> throw new IllegalArgumentException(args[0]);
        }
    }

    static Connection connect() throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", System.getenv("PGUSER"));
        p.setProperty("password", System.getenv("PGPASSWORD"));
        return DriverManager.getConnection(URL, p);
    }

    static void kept() throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("CREATE TEMP TABLE t AS SELECT generate_series(1, 30) AS x");
            s.execute("SET application_name = 'tls-jdbc'");
            Phases.phase("parked");
            try (ResultSet rs = s.executeQuery(
                    "SELECT count(*), sum(x), current_setting('application_name') FROM t")) {
                Phases.check(rs.next(), "no row");
                String got = rs.getLong(1) + " " + rs.getLong(2) + " " + rs.getString(3);
                Phases.check(got.equals("30 465 tls-jdbc"), "after the wake: " + got);
            }
        }
        System.out.println("jdbc tls ok");
    }

    static void refused() throws Exception {
        try (Connection c = connect()) {
            throw new AssertionError("pgjdbc trusted another CA's certificate");
        } catch (SQLException e) {
            // pgjdbc wraps the JSSE failure: "SSL error: PKIX path building failed: ...".
            String text = e.getMessage() + " / " + e.getCause();
            Phases.check(text.contains("PKIX path building failed"), text);
        }
        System.out.println("jdbc tls refused ok");
    }
}
