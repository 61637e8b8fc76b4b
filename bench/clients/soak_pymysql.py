"""PyMySQL in the soak (scripts/soak.sh): one MariaDB session that keeps its state across
sleep/wake cycles. The protocol and the state: soak_common.py and bench/src/soak.rs. PyMySQL's
default autocommit=0: every step ends with a commit, so the session is idle between cycles.
The schema is chosen with select_db (COM_INIT_DB); mysql_async's session uses USE."""

import pymysql

from soak_common import DB, HOST, PASSWORD, PORT, TAG, USER, serve, text

CHECK = (
    "SELECT DATABASE(), @@session.group_concat_max_len, @@session.time_zone,"
    " @soak_step, @soak_s, (SELECT COUNT(*) FROM soak_t),"
    " (SELECT COALESCE(SUM(id), 0) FROM soak_t), LAST_INSERT_ID(),"
    " IS_USED_LOCK(%s) = @@pseudo_thread_id"
)


class Session:
    FIELDS = ["DATABASE()", "group_concat_max_len", "time_zone", "@soak_step", "@soak_s",
              "temp rows", "sum(id)", "LAST_INSERT_ID()", "named lock held", "EXECUTE soak_q"]

    def __init__(self, k, generation):
        self.lock = f"soak_{TAG}_{generation}"
        self.c = pymysql.connect(host=HOST, port=int(PORT), user=USER, password=PASSWORD,
                                 database=DB)
        cur = self.c.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS soak_{TAG}")
        self.c.select_db(f"soak_{TAG}")
        cur.execute("SET SESSION time_zone = '+01:00'")
        cur.execute("CREATE TEMPORARY TABLE soak_t (id INT AUTO_INCREMENT PRIMARY KEY,"
                    " v VARCHAR(40) NOT NULL)")
        if k:
            cur.executemany("INSERT INTO soak_t (id, v) VALUES (%s, %s)",
                            [(i, f"row {i}") for i in range(1, k + 1)])
        cur.execute("INSERT INTO soak_t (v) VALUES (%s)", (f"row {k + 1}",))
        cur.execute(f"PREPARE soak_q FROM 'SELECT {k}'")
        cur.execute("SELECT GET_LOCK(%s, 0)", (self.lock,))
        locked = cur.fetchone()[0]
        if locked != 1:
            raise RuntimeError(f"GET_LOCK({self.lock!r}) gave {locked!r}")
        self.step_vars(cur, k)
        self.c.commit()

    @staticmethod
    def step_vars(cur, k):
        cur.execute(f"SET SESSION group_concat_max_len = {1024 + k}")
        cur.execute("SET @soak_step = %s, @soak_s = %s", (k, f"step {k}"))

    def check(self, k):
        cur = self.c.cursor()
        cur.execute(CHECK, (self.lock,))
        got = [text(v) for v in cur.fetchone()]
        cur.execute("EXECUTE soak_q")
        got.append(text(cur.fetchone()[0]))
        return got

    def expected(self, k):
        return [f"soak_{TAG}", str(1024 + k), "+01:00", str(k), f"step {k}",
                *map(str, [k + 1, (k + 1) * (k + 2) // 2, k + 1, 1, k])]

    def advance(self, n):
        cur = self.c.cursor()
        self.step_vars(cur, n)
        cur.execute("INSERT INTO soak_t (v) VALUES (%s)", (f"row {n + 1}",))
        cur.execute("DEALLOCATE PREPARE soak_q")
        cur.execute(f"PREPARE soak_q FROM 'SELECT {n}'")
        self.c.commit()

    def close(self):
        self.c.close()


serve(Session)
