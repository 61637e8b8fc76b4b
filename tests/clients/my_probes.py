"""One MySQL client's default connect and health checks, for tests/tests/mysql_idle_clients.rs.

Usage: my_probes.py pymysql|connector-pure|connector-c, with TORPOR_HOST, TORPOR_PORT,
TORPOR_USER, TORPOR_PASSWORD and TORPOR_DB set. Connects with the client's defaults, pings the
way the client and its pools do, prints "asleep" and waits for a line on stdin; then reads what
the connection set up and prints it as one JSON line.
"""

import json
import os
import sys

KIND = sys.argv[1]
ARGS = dict(
    host=os.environ["TORPOR_HOST"],
    port=int(os.environ["TORPOR_PORT"]),
    user=os.environ["TORPOR_USER"],
    password=os.environ["TORPOR_PASSWORD"],
    database=os.environ["TORPOR_DB"],
)
STATE = ("SELECT @@autocommit, @@character_set_client, @@character_set_connection, "
         "@@character_set_results, @@collation_connection, @@time_zone, @@sql_mode")

if KIND == "pymysql":
    import pymysql

    conn = pymysql.connect(**ARGS)
    for _ in range(5):
        conn.ping(reconnect=False)
else:
    import mysql.connector

    pure = KIND == "connector-pure"
    if not pure:
        from mysql.connector import HAVE_CEXT

        assert HAVE_CEXT, "mysql-connector-python has no C extension here"
    conn = mysql.connector.connect(use_pure=pure, **ARGS)
    for _ in range(5):
        assert conn.is_connected()
        conn.ping()
        conn.cursor().close()

print("asleep", flush=True)
sys.stdin.readline()
cur = conn.cursor()
cur.execute(STATE)
print(json.dumps([str(v) for v in cur.fetchone()]), flush=True)
cur.close()
conn.close()
