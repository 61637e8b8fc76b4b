"""psycopg 3 in the soak (scripts/soak.sh): one PostgreSQL session that keeps its state across
sleep/wake cycles. The protocol and the state: soak_common.py and bench/src/soak.rs. psycopg's
default transactions: every step runs in one (psycopg sends BEGIN) and ends with a commit, so
the session is idle between cycles."""

import psycopg

from soak_common import DB, HOST, PASSWORD, PORT, TAG, USER, serve, text

CHECK = (
    "SELECT current_schema()::text,"
    " (SELECT setting FROM pg_settings WHERE name = 'work_mem'),"
    " current_setting('application_name'), current_setting('soak.step', true),"
    " (SELECT count(*) FROM soak_t)::text, (SELECT coalesce(sum(id), 0) FROM soak_t)::text,"
    " nextval('soak_seq')::text,"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND granted)::text"
)


def settings(k):
    return [
        f"SET work_mem = '{64 + k}kB'",
        f"SET application_name = 'soak-{TAG}-{k}'",
        f"SET soak.step = '{k}'",
    ]


class Session:
    FIELDS = ["current_schema", "work_mem", "application_name", "soak.step", "temp rows",
              "sum(id)", "nextval", "advisory locks", "EXECUTE soak_q", "prepared statement"]

    def __init__(self, k, generation):
        self.c = psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB)
        cur = self.c.cursor()
        for sql in [
            f"CREATE SCHEMA IF NOT EXISTS soak_{TAG}",
            f"SET search_path = soak_{TAG}, public",
            *settings(k),
            "CREATE TEMP TABLE soak_t (id int PRIMARY KEY, v text NOT NULL)",
            f"INSERT INTO soak_t SELECT g, 'row ' || g FROM generate_series(0, {k}) g",
            "CREATE TEMP SEQUENCE soak_seq",
            f"SELECT setval('soak_seq', {k + 1}, false)",
            f"SELECT pg_advisory_lock({2_000_000 + generation})",
            f"PREPARE soak_q AS SELECT {k}",
        ]:
            cur.execute(sql)
        self.twice(cur, k)
        self.c.commit()

    @staticmethod
    def twice(cur, k):
        # prepare=True: a server-side prepared statement (_pg3_N) from the first run on.
        cur.execute("SELECT %s::int * 2", (k,), prepare=True)
        return text(cur.fetchone()[0])

    def check(self, k):
        cur = self.c.cursor()
        cur.execute(CHECK)
        got = [text(v) for v in cur.fetchone()]
        cur.execute("EXECUTE soak_q")
        got.append(text(cur.fetchone()[0]))
        got.append(self.twice(cur, k))
        return got

    def expected(self, k):
        return [f"soak_{TAG}", str(64 + k), f"soak-{TAG}-{k}",
                *map(str, [k, k + 1, k * (k + 1) // 2, k + 1, 1, k, 2 * k])]

    def advance(self, n):
        cur = self.c.cursor()
        for sql in [
            *settings(n),
            f"INSERT INTO soak_t VALUES ({n}, 'row {n}')",
            "DEALLOCATE soak_q",
            f"PREPARE soak_q AS SELECT {n}",
        ]:
            cur.execute(sql)
        self.c.commit()

    def close(self):
        self.c.close()


serve(Session)
