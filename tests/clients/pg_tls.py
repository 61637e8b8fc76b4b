"""psycopg 3 (its bundled libpq 18) and asyncpg through torpor over TLS, each verifying torpor's
certificate against the test's CA, with their state kept across a forced sleep.

Run by tests/tests/pg_tls_clients.rs as `pg_tls.py kept` or `pg_tls.py refused`, with
TORPOR_PORT, RELAY_PORT (a free port for the relay below), TORPOR_CA, PGUSER, PGPASSWORD and
PGDATABASE set.

kept: four connections, each with a temp table and a SET: psycopg with sslmode=verify-full and
channel_binding=require, the same with sslnegotiation=direct, asyncpg with an SSLContext that
trusts only the CA, and the same with direct_tls. Prints "parked" and waits for "go" on stdin
while the test puts the database to sleep, then checks each connection's state on the new
server. Prints "python tls ok" at the end.

refused: TORPOR_CA is another CA; every one of those connections must fail certificate
verification. Prints "python tls refused ok".

Exits non-zero (an AssertionError or a driver error) otherwise.
"""

import asyncio
import os
import socket
import ssl
import sys
import threading

import asyncpg
import psycopg

PORT = int(os.environ["TORPOR_PORT"])
RELAY_PORT = int(os.environ["RELAY_PORT"])
CA = os.environ["TORPOR_CA"]
USER = os.environ["PGUSER"]
PASSWORD = os.environ["PGPASSWORD"]
DATABASE = os.environ["PGDATABASE"]

# The first byte of a TLS handshake record; an SSLRequest starts with its length, 0x00000008.
TLS_HANDSHAKE = 0x16


class Relay:
    """Passes connections on RELAY_PORT to torpor and keeps the first byte each client sent.
    libpq says nothing of how it negotiated TLS (PQsslAttribute has no such attribute, and
    psycopg shows only ssl_in_use), nor does asyncpg: this shows whether a client really opened
    with a ClientHello (sslnegotiation=direct) or with an SSLRequest."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", RELAY_PORT))
        self.first = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", PORT))
            # Every client speaks first, in both negotiations.
            self.first.append(client.recv(1, socket.MSG_PEEK)[0])
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=pipe, args=(src, dst), daemon=True).start()

    def opened_with(self):
        """The first byte of the last connection, and forgets it."""
        assert len(self.first) == 1, self.first
        return self.first.pop()


def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def phase(name):
    """Tells the test a phase is done and waits until it lets us go on."""
    print(name, flush=True)
    line = sys.stdin.readline().strip()
    assert line == "go", f"expected go, got {line!r}"


def psycopg_connect(direct):
    conninfo = (
        f"host=localhost hostaddr=127.0.0.1 port={RELAY_PORT} user={USER} dbname={DATABASE} "
        f"sslmode=verify-full sslrootcert={CA} channel_binding=require"
    )
    if direct:
        conninfo += " sslnegotiation=direct"
    return psycopg.connect(conninfo, password=PASSWORD, autocommit=True)


def ssl_context():
    """Trusts only the test's CA and checks the name (asyncpg passes the host, localhost)."""
    ctx = ssl.create_default_context(cafile=CA)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    # asyncpg sets ALPN only on contexts it makes; a direct connection needs it (PostgreSQL 17).
    ctx.set_alpn_protocols(["postgresql"])
    return ctx


async def asyncpg_connect(direct):
    return await asyncpg.connect(
        host="localhost",
        port=RELAY_PORT,
        user=USER,
        password=PASSWORD,
        database=DATABASE,
        ssl=ssl_context(),
        direct_tls=direct,
    )


def negotiated(relay, direct, what):
    first = relay.opened_with()
    assert (first == TLS_HANDSHAKE) == direct, f"{what}: first byte {first:#04x}"


async def kept():
    relay = Relay()
    sessions = []
    for direct in (False, True):
        what = f"psycopg direct={direct}"
        c = psycopg_connect(direct)
        negotiated(relay, direct, what)
        assert c.pgconn.ssl_in_use, what
        n = len(sessions) + 1
        c.execute(f"create temp table t as select generate_series(1, {10 * n}) as x")
        c.execute(f"set application_name = 'tls-{n}'")
        sessions.append((what, n, c))
    for direct in (False, True):
        what = f"asyncpg direct={direct}"
        c = await asyncpg_connect(direct)
        negotiated(relay, direct, what)
        tls = c._transport.get_extra_info("ssl_object")
        assert tls is not None, what
        assert tls.selected_alpn_protocol() == "postgresql", what
        n = len(sessions) + 1
        await c.execute(f"create temp table t as select generate_series(1, {10 * n}) as x")
        await c.execute(f"set application_name = 'tls-{n}'")
        sessions.append((what, n, c))

    phase("parked")

    for what, n, c in sessions:
        sql = "select count(*), sum(x), current_setting('application_name') from t"
        if isinstance(c, psycopg.Connection):
            got = c.execute(sql).fetchone()
            assert c.pgconn.ssl_in_use, what
            c.close()
        else:
            got = tuple(await c.fetchrow(sql))
            await c.close()
        want = (10 * n, 10 * n * (10 * n + 1) // 2, f"tls-{n}")
        assert got == want, f"{what}: {got} != {want}"
    assert not relay.first, relay.first
    print("python tls ok")


async def refused():
    # The relay only passes bytes on; torpor's certificate is what is refused.
    Relay()
    for direct in (False, True):
        try:
            psycopg_connect(direct).close()
        except psycopg.OperationalError as e:
            assert "certificate verify failed" in str(e), e
        else:
            raise AssertionError(f"psycopg direct={direct} trusted another CA's certificate")
    for direct in (False, True):
        try:
            await (await asyncpg_connect(direct)).close()
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError(f"asyncpg direct={direct} trusted another CA's certificate")
    print("python tls refused ok")


asyncio.run({"kept": kept, "refused": refused}[sys.argv[1]]())
