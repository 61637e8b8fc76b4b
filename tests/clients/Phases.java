// What the Java client programs share: stepping through the phases the test drives, and
// failing on a wrong answer. Compiled with each program (tests/src/java.rs).

import java.io.BufferedReader;
import java.io.InputStreamReader;

final class Phases {
    private static final BufferedReader STDIN =
            new BufferedReader(new InputStreamReader(System.in));

    private Phases() {}

    /** Tells the test a phase is done and waits until it lets us go on. */
    static void phase(String name) throws Exception {
        System.out.println(name);
        System.out.flush();
        String line = STDIN.readLine();
        if (!"go".equals(line)) {
            throw new IllegalStateException("expected go, got " + line);
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
