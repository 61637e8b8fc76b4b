"""PyMySQL and MySQL Connector/Python over TLS to torpor, verifying its certificate against the
test's CA, while the cluster is put to sleep. The cluster requires TLS, so a client that fell
back to plaintext would be refused.

Run by tests/tests/mysql_tls.rs with TORPOR_HOST, TORPOR_PORT, TORPOR_USER, TORPOR_PASSWORD,
TORPOR_DB, TORPOR_CA, TORPOR_ADMIN and TORPOR_CLUSTER set. Exits non-zero on any lost state,
failed verification or client-visible error.
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
CA = os.environ["TORPOR_CA"]


def state_survives(cur):
    cur.execute("CREATE TEMPORARY TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
    cur.execute("INSERT INTO t (v) VALUES ('a'), ('b')")
    cur.execute("SET @over_tls = 'yes'")
    for i in range(2):
        sleep_cluster()
        cur.execute("SELECT COUNT(*), @over_tls FROM t")
        assert tuple(cur.fetchone()) == (2 + i, "yes"), i
        cur.execute("INSERT INTO t (v) VALUES ('c')")


def with_pymysql():
    c = pymysql.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB,
                        autocommit=True, ssl_ca=CA, ssl_verify_cert=True,
                        ssl_verify_identity=True)
    # PyMySQL wraps its socket in an ssl.SSLSocket once TLS is on.
    assert hasattr(c._sock, "cipher") and c._sock.cipher(), "not on TLS"
    state_survives(c.cursor())
    c.close()


def with_connector():
    c = mysql.connector.connect(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                database=DB, use_pure=True, ssl_ca=CA,
                                ssl_verify_cert=True, ssl_verify_identity=True,
                                auth_plugin="caching_sha2_password", autocommit=True)
    state_survives(c.cursor())
    c.close()


with_pymysql()
with_connector()
print("python mysql tls clients ok")
