// pgjdbc against a sleeping database: connecting and the usual health checks must be answered
// without waking it, with the answers the server gives.
//
// Run by tests/tests/pg_idle_clients.rs with TORPOR_JDBC_URL,
// DIRECT_JDBC_URL (the backend's own port), PGUSER and PGPASSWORD set. It prints "awake",
// "asleep" after the phase of that name and waits for "go" on stdin before the next phase: the
// test puts the database to sleep and checks it stayed asleep in between. "ok" at the end;
// a non-zero exit (an AssertionError or a driver error) on any wrong answer.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class PgIdleJdbc {
    static final String URL = System.getenv("TORPOR_JDBC_URL");
    static final String DIRECT = System.getenv("DIRECT_JDBC_URL");
    static final String USER = System.getenv("PGUSER");
    static final String PASSWORD = System.getenv("PGPASSWORD");

    public static void main(String[] args) throws Exception {
        driver();
        System.out.println("ok");
    }

    static Connection connect(String url) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", USER);
        p.setProperty("password", PASSWORD);
        return DriverManager.getConnection(url, p);
    }

    /**
     * A pool's health check and an application's ping, as pgjdbc sends them: isValid(5) seven
     * times (an unnamed statement of the empty query, a named one S_n from the sixth use on, as
     * prepareThreshold is 5) and a PreparedStatement SELECT 1 run seven times (binary results
     * once it is a named statement). What the client sees, one line per answer.
     */
    static List<String> healthCheck(Connection c) throws SQLException {
        List<String> seen = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            seen.add("isValid " + c.isValid(5));
        }
        try (PreparedStatement ps = c.prepareStatement("SELECT 1")) {
            for (int i = 0; i < 7; i++) {
                seen.add(selectOne(ps));
            }
        }
        return seen;
    }

    /** The result of a SELECT 1 as the application sees it: column, type, value, row count. */
    static String selectOne(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            ResultSetMetaData md = rs.getMetaData();
            Phases.check(rs.next(), "SELECT 1 returned no row");
            Object v = rs.getObject(1);
            // Types from pgjdbc's built-in table: getColumnTypeName(int4) asks the server nothing.
            String line = "select " + md.getColumnCount() + " " + md.getColumnLabel(1) + " "
                + md.getColumnTypeName(1) + " " + v.getClass().getSimpleName() + " " + v;
            Phases.check(!rs.next(), "SELECT 1 returned a second row");
            return line;
        }
    }

    static String show(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            Phases.check(rs.next(), sql + ": no row");
            return rs.getString(1);
        }
    }

    static void driver() throws Exception {
        // The first connection wakes the database. torpor sees this client's startup while the
        // server runs, so it knows what to answer the next one with; and the connection's
        // statements S_1, S_2 are prepared on the server when it parks.
        Connection early = connect(URL);
        // What the server itself answers: the reference for every answer through torpor.
        List<String> expected;
        try (Connection direct = connect(DIRECT)) {
            expected = healthCheck(direct);
        }
        Phases.check(expected.contains("isValid true"), "the server's own isValid: " + expected);
        List<String> awake = healthCheck(early);
        Phases.check(awake.equals(expected), "awake: " + awake + " != " + expected);
        Phases.phase("awake");

        // Asleep: the parked connection, then new ones, each with its connect-time SETs.
        List<String> got = healthCheck(early);
        Phases.check(got.equals(expected), "parked connection: " + got + " != " + expected);
        for (int i = 0; i < 2; i++) {
            // A pool replacing a connection: a new one checked, then closed.
            try (Connection c = connect(URL)) {
                got = healthCheck(c);
                Phases.check(got.equals(expected), "new connection " + i + ": " + got);
            }
        }
        Connection late = connect(URL);
        Phases.check(late.isValid(5), "isValid on the connection kept for later");
        Phases.phase("asleep");

        // A real query wakes the database; the settings pgjdbc SET while it slept hold there.
        String digits = show(late, "SHOW extra_float_digits");
        Phases.check(digits.equals("3"), "extra_float_digits " + digits);
        String app = show(late, "SHOW application_name");
        Phases.check(app.equals("PostgreSQL JDBC Driver"), "application_name " + app);
        Phases.check(show(early, "SELECT count(*) FROM pg_prepared_statements").equals("2"),
            "the parked connection's S_1 and S_2 on the server");
        late.close();
        early.close();
    }
}
