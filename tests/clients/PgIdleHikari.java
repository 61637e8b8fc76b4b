// A HikariCP pool of pgjdbc connections against a sleeping database: the pool validating each
// borrow (isValid) and replacing connections on maxLifetime must not wake it.
//
// Run by tests/tests/pg_idle_clients.rs with TORPOR_JDBC_URL, PGUSER and PGPASSWORD set. It
// prints "awake", then "asleep", after the phase of that name and waits for "go" on stdin before
// the next: the test puts the database to sleep and checks it stayed asleep in between. "ok" at
// the end; a non-zero exit (an AssertionError or a driver error) on any wrong answer.

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HashSet;
import java.util.Set;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import org.postgresql.PGConnection;

public class PgIdleHikari {
    static String first(ResultSet rs, String what) throws SQLException {
        Phases.check(rs.next(), what + ": no row");
        return rs.getString(1);
    }

    static String show(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return first(rs, sql);
        }
    }

    public static void main(String[] args) throws Exception {
        // Validate on every borrow (by default only after 500 ms idle), so each borrow below is
        // a health check. HikariPool reads it when it loads: set before the pool is made.
        System.setProperty("com.zaxxer.hikari.aliveBypassWindowMs", "0");
        HikariConfig config = new HikariConfig();
        config.setJdbcUrl(System.getenv("TORPOR_JDBC_URL"));
        config.setUsername(System.getenv("PGUSER"));
        config.setPassword(System.getenv("PGPASSWORD"));
        config.setPoolName("idle");
        config.setMaximumPoolSize(2);
        config.setMinimumIdle(2);
        // No connectionTestQuery: validation is pgjdbc's isValid(5), as pools are usually set up.
        config.setValidationTimeout(5000);
        try (HikariDataSource pool = new HikariDataSource(config)) {
            // The first connection wakes the database; the pool adds the second in the
            // background.
            long until = System.currentTimeMillis() + 30_000;
            while (pool.getHikariPoolMXBean().getIdleConnections() < 2) {
                Phases.check(System.currentTimeMillis() < until, "the pool never filled");
                Thread.sleep(20);
            }
            try (Connection c = pool.getConnection()) {
                Phases.check(show(c, "SELECT 1").equals("1"), "SELECT 1 while awake");
            }
            Phases.phase("awake");

            // HikariCP 2.7 refuses a maxLifetime under 30 s at start; its runtime MXBean takes a
            // short one, which the connections made from now on get.
            pool.getHikariConfigMXBean().setMaxLifetime(1500);
            // Retire the connections made while awake: each is closed when idle and the pool
            // opens a replacement, now while the database sleeps.
            pool.getHikariPoolMXBean().softEvictConnections();
            Set<Integer> seen = new HashSet<>();
            long end = System.currentTimeMillis() + 5_000;
            int borrows = 0;
            while (System.currentTimeMillis() < end) {
                try (Connection c = pool.getConnection()) {
                    borrows++;
                    // One pid per physical connection: torpor's stable key for the session.
                    seen.add(c.unwrap(PGConnection.class).getBackendPID());
                    try (PreparedStatement ps = c.prepareStatement("SELECT 1");
                            ResultSet rs = ps.executeQuery()) {
                        Phases.check(first(rs, "SELECT 1").equals("1"), "SELECT 1 while asleep");
                    }
                }
                Thread.sleep(100);
            }
            // The two made while awake were evicted; their replacements live 1.5 s of the 5 s,
            // so at least two later generations (maxLifetime's replacements) were borrowed.
            Phases.check(seen.size() >= 3, "connections borrowed: " + seen + " in " + borrows);
            System.out.println("borrows " + borrows + " connections " + seen.size());
            Phases.phase("asleep");

            // A real query wakes the database; the connection's connect-time SETs, answered
            // while it slept, hold on the server.
            try (Connection c = pool.getConnection()) {
                String digits = show(c, "SHOW extra_float_digits");
                Phases.check(digits.equals("3"), "extra_float_digits " + digits);
                String app = show(c, "SHOW application_name");
                Phases.check(app.equals("PostgreSQL JDBC Driver"), "application_name " + app);
            }
        }
        System.out.println("ok");
    }
}
