"""psycopg2's default: autocommit off, so a single SELECT leaves the session idle in a
transaction. Such a session must not keep the database from stopping, and must find itself in
the same transaction block afterwards.

Run by tests/tests/pg_transactions.rs with TORPOR_URL set. Prints "in transaction" once idle in
its transaction and waits for "go" on stdin (the test puts the database to sleep meanwhile),
then goes on in the same transaction and prints "ok".
"""

import os
import sys

import psycopg2
import psycopg2.extensions as ext

conn = psycopg2.connect(os.environ["TORPOR_URL"])
cur = conn.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS ro_items(x int)")
cur.execute("INSERT INTO ro_items SELECT generate_series(1, 5)")
conn.commit()

cur.execute("SELECT count(*) FROM ro_items")
assert cur.fetchone()[0] == 5
assert conn.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS
print("in transaction", flush=True)
assert sys.stdin.readline().strip() == "go"

# psycopg2 believes it is still in its transaction, so it sends no BEGIN: the server must be
# in one for this to work.
cur.execute("SELECT count(*) FROM ro_items")
assert cur.fetchone()[0] == 5
cur.execute("SAVEPOINT inside")
cur.execute("SELECT current_setting('transaction_isolation')")
assert cur.fetchone()[0] == "read committed"
assert conn.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS
conn.rollback()
assert conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
cur.execute("SELECT count(*) FROM ro_items")
assert cur.fetchone()[0] == 5
conn.commit()
print("ok", flush=True)
