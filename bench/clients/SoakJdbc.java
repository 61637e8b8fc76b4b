// pgjdbc in the soak (scripts/soak.sh): one PostgreSQL session that keeps its state across
// sleep/wake cycles. The line protocol (setup, cycle N, quit; ok, error, mismatch) is
// soak_common.py's, the state bench/src/soak.rs's. prepareThreshold=1: the PreparedStatement is a
// named server-side statement (S_n) from its first run on; each step is one explicit
// transaction (setAutoCommit(false) ... commit).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class SoakJdbc {
    static final String TAG = System.getenv("SOAK_TAG");
    static final String URL = "jdbc:postgresql://" + System.getenv("SOAK_HOST") + ":"
            + System.getenv("SOAK_PORT") + "/" + System.getenv("SOAK_DB") + "?prepareThreshold=1";
    static final String[] FIELDS = {"current_schema", "work_mem", "application_name",
        "soak.step", "temp rows", "sum(id)", "nextval", "advisory locks", "EXECUTE soak_q",
        "prepared statement"};
    static final String CHECK = "SELECT current_schema()::text,"
            + " (SELECT setting FROM pg_settings WHERE name = 'work_mem'),"
            + " current_setting('application_name'), current_setting('soak.step', true),"
            + " (SELECT count(*) FROM soak_t)::text,"
            + " (SELECT coalesce(sum(id), 0) FROM soak_t)::text, nextval('soak_seq')::text,"
            + " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            + " AND pid = pg_backend_pid() AND granted)::text";

    final Connection c;
    final PreparedStatement twice;

    /** Connects and builds the state of step k. */
    SoakJdbc(long k, long generation) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", System.getenv("SOAK_USER"));
        p.setProperty("password", System.getenv("SOAK_PASSWORD"));
        c = DriverManager.getConnection(URL, p);
        try (Statement s = c.createStatement()) {
            s.execute("CREATE SCHEMA IF NOT EXISTS soak_" + TAG);
            s.execute("SET search_path = soak_" + TAG + ", public");
            settings(s, k);
            s.execute("CREATE TEMP TABLE soak_t (id int PRIMARY KEY, v text NOT NULL)");
            s.execute("INSERT INTO soak_t SELECT g, 'row ' || g FROM generate_series(0, " + k
                    + ") g");
            s.execute("CREATE TEMP SEQUENCE soak_seq");
            s.execute("SELECT setval('soak_seq', " + (k + 1) + ", false)");
            s.execute("SELECT pg_advisory_lock(" + (3_000_000L + generation) + ")");
            s.execute("PREPARE soak_q AS SELECT " + k);
        }
        twice = c.prepareStatement("SELECT ?::int * 2");
        twice(k);
    }

    static void settings(Statement s, long k) throws SQLException {
        s.execute("SET work_mem = '" + (64 + k) + "kB'");
        s.execute("SET application_name = 'soak-" + TAG + "-" + k + "'");
        s.execute("SET soak.step = '" + k + "'");
    }

    static String text(String v) {
        return v == null ? "NULL" : v;
    }

    String twice(long k) throws SQLException {
        twice.setInt(1, (int) k);
        try (ResultSet rs = twice.executeQuery()) {
            rs.next();
            return String.valueOf(rs.getInt(1));
        }
    }

    List<String> check(long k) throws SQLException {
        List<String> got = new ArrayList<>();
        try (Statement s = c.createStatement()) {
            try (ResultSet rs = s.executeQuery(CHECK)) {
                rs.next();
                for (int i = 1; i <= 8; i++) {
                    got.add(text(rs.getString(i)));
                }
            }
            try (ResultSet rs = s.executeQuery("EXECUTE soak_q")) {
                rs.next();
                got.add(text(rs.getString(1)));
            }
        }
        got.add(twice(k));
        return got;
    }

    static List<String> expected(long k) {
        List<String> v = new ArrayList<>();
        v.add("soak_" + TAG);
        v.add(String.valueOf(64 + k));
        v.add("soak-" + TAG + "-" + k);
        for (long x : new long[] {k, k + 1, k * (k + 1) / 2, k + 1, 1, k, 2 * k}) {
            v.add(String.valueOf(x));
        }
        return v;
    }

    void advance(long n) throws SQLException {
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            settings(s, n);
            s.execute("INSERT INTO soak_t VALUES (" + n + ", 'row " + n + "')");
            s.execute("DEALLOCATE soak_q");
            s.execute("PREPARE soak_q AS SELECT " + n);
        }
        c.commit();
        c.setAutoCommit(true);
    }

    static String diff(List<String> want, List<String> got) {
        if (want.size() != got.size()) {
            return "expected " + want + ", got " + got;
        }
        List<String> bad = new ArrayList<>();
        for (int i = 0; i < want.size(); i++) {
            if (!want.get(i).equals(got.get(i))) {
                bad.add(FIELDS[i] + ": expected \"" + want.get(i) + "\", got \"" + got.get(i)
                        + "\"");
            }
        }
        return bad.isEmpty() ? null : String.join("; ", bad);
    }

    static String oneLine(Exception e) {
        return (e.getClass().getSimpleName() + ": " + e.getMessage()).replaceAll("\\s+", " ");
    }

    static SoakJdbc session;
    static long step;
    static long generation;

    /** Closes the connection (if any) and opens a new one holding the state of step n. */
    static void reopen(long n) throws SQLException {
        if (session != null) {
            try {
                session.c.close();
            } catch (SQLException e) {
                // gone already
            }
            session = null;
        }
        generation++;
        step = n;
        session = new SoakJdbc(n, generation);
    }

    static String cycle(long n) {
        String answer = "ok";
        try {
            if (session == null) {
                throw new SQLException("no connection: the last reconnect failed");
            }
            List<String> got;
            try {
                got = session.check(step);
            } catch (SQLException e) {
                throw new SQLException("check: " + e.getMessage(), e);
            }
            String d = diff(expected(step), got);
            if (d != null) {
                answer = "mismatch " + d;
            } else {
                session.advance(n);
            }
        } catch (SQLException e) {
            answer = "error " + oneLine(e);
        }
        if (answer.equals("ok")) {
            step = n;
        } else {
            try {
                reopen(n);
            } catch (SQLException e) {
                System.err.println("soak " + TAG + ": reconnect failed: " + oneLine(e));
            }
        }
        return answer;
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] cmd = line.trim().split(" ");
            if (cmd[0].equals("quit")) {
                break;
            }
            String answer;
            if (cmd[0].equals("setup")) {
                try {
                    reopen(0);
                    answer = "ok";
                } catch (SQLException e) {
                    answer = "error setup: " + oneLine(e);
                }
            } else {
                answer = cycle(Long.parseLong(cmd[1]));
            }
            System.out.println(answer);
            System.out.flush();
        }
        if (session != null) {
            session.c.close();
        }
    }
}
