"""The line protocol of the soak's client programs (scripts/soak.sh, bench/src/soak.rs).

The driver writes `setup`, `cycle N` or `quit`, one a line; the program answers `ok`,
`error MESSAGE` (the client library raised) or `mismatch MESSAGE` (a value read back differs).
A session holds the state of its step k (0 after setup); at `cycle N` it reads back the state
of step N - 1, then moves it to step N. After a failure it opens a new connection holding the
state of step N, so one failure is counted once. What the state is: bench/src/soak.rs.
"""

import os
import sys

# The cluster's address, the credentials, the database and the session's tag (bench/src/soak.rs).
HOST, PORT, USER, PASSWORD, DB, TAG = (
    os.environ[f"SOAK_{name}"] for name in ("HOST", "PORT", "USER", "PASSWORD", "DB", "TAG")
)


def text(v):
    """A value as the Rust sessions compare it: NULL, or its text."""
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, bytearray)):
        return v.decode()
    return str(v)


def diff(fields, want, got):
    """The fields whose values differ, or None."""
    if len(want) != len(got):
        return f"expected {want!r}, got {got!r}"
    bad = [f"{f}: expected {w!r}, got {g!r}" for f, w, g in zip(fields, want, got) if w != g]
    return "; ".join(bad) or None


def one_line(e):
    return " ".join(f"{type(e).__name__}: {e}".split())


def serve(session_type):
    """Answers the driver until `quit`. session_type(step, generation) connects and builds the
    state of step; the session has FIELDS, check(step) (the values read back, as text),
    expected(step), advance(step) and close()."""
    session, step, generation = None, 0, 0

    def reopen(n):
        nonlocal session, step, generation
        if session is not None:
            try:
                session.close()
            except Exception:
                pass
            session = None
        generation += 1
        step = n
        session = session_type(n, generation)

    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "setup":
            try:
                reopen(0)
                answer = "ok"
            except Exception as e:
                answer = "error setup: " + one_line(e)
            print(answer, flush=True)
            continue
        n = int(cmd[1])
        answer = "ok"
        try:
            if session is None:
                raise RuntimeError("no connection: the last reconnect failed")
            got = session.check(step)
        except Exception as e:
            answer = "error check: " + one_line(e)
        else:
            d = diff(session.FIELDS, session.expected(step), got)
            if d:
                answer = "mismatch " + d
            else:
                try:
                    session.advance(n)
                except Exception as e:
                    answer = "error step: " + one_line(e)
        if answer == "ok":
            step = n
        else:
            try:
                reopen(n)
            except Exception as e:
                print(f"soak {TAG}: reconnect failed: {one_line(e)}", file=sys.stderr, flush=True)
        print(answer, flush=True)
    if session is not None:
        session.close()
