"""PyMySQL and MySQL Connector/Python through torpor while the cluster is put to sleep.

Run by tests/tests/mysql_python_clients.rs with TORPOR_HOST, TORPOR_PORT, TORPOR_USER,
TORPOR_PASSWORD, TORPOR_DB, TORPOR_ADMIN and TORPOR_CLUSTER set. Connector/Python logs in
with caching_sha2_password (its fast-auth path), PyMySQL with mysql_native_password. Exits
non-zero on any lost state or client-visible error.
"""

import os

import mysql.connector
import pymysql

from admin_api import sleep_cluster

HOST = os.environ["TORPOR_HOST"]
PORT = int(os.environ["TORPOR_PORT"])
USER = os.environ["TORPOR_USER"]
PASSWORD = os.environ["TORPOR_PASSWORD"]
DB = os.environ["TORPOR_DB"]


def with_pymysql():
    c = pymysql.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                        autocommit=True)
    cur = c.cursor()
    cur.execute("CREATE TEMPORARY TABLE p (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
    cur.executemany("INSERT INTO p (v) VALUES (%s)", [(f"x{i}",) for i in range(50)])
    cur.execute("SET @greeting = 'héllo', time_zone = '+02:00'")
    for i in range(3):
        sleep_cluster()
        cur.execute("SELECT COUNT(*), MAX(id), @greeting, @@time_zone FROM p")
        assert cur.fetchone() == (50 + i, 50 + i, "héllo", "+02:00"), i
        cur.execute("INSERT INTO p (v) VALUES ('y')")
        assert cur.lastrowid == 51 + i, cur.lastrowid
    c.ping()
    c.close()


def with_connector():
    c = mysql.connector.connect(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                database=DB, use_pure=True,
                                auth_plugin="caching_sha2_password")
    cur = c.cursor(prepared=True)
    cur.execute("SELECT ? + 1", (41,))
    assert cur.fetchone() == (42,)
    plain = c.cursor()
    plain.execute("CREATE TEMPORARY TABLE q (id INT PRIMARY KEY, b BLOB)")
    blob = bytes(range(256)) * 4
    plain.execute("INSERT INTO q VALUES (1, %s)", (blob,))
    c.commit()
    for _ in range(2):
        sleep_cluster()
        cur.execute("SELECT ? * 2", (21,))
        assert cur.fetchone() == (42,)
        plain.execute("SELECT b FROM q WHERE id = 1")
        assert bytes(plain.fetchone()[0]) == blob
    c.close()
    try:
        mysql.connector.connect(host=HOST, port=PORT, user=USER, password="wrong",
                                database=DB, use_pure=True,
                                auth_plugin="caching_sha2_password")
        raise AssertionError("a wrong password was accepted")
    except mysql.connector.Error as e:
        assert e.errno == 1045, e


with_pymysql()
with_connector()
print("python mysql clients ok")
