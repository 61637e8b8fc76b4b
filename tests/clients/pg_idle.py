"""psycopg2 (with SQLAlchemy's pool), psycopg 3 (with psycopg_pool) and asyncpg against a
sleeping database: connecting and each client's usual health check must be answered without
waking it, with the answers the server itself gives.

Run by tests/tests/pg_idle_clients.rs as `pg_idle.py psycopg2|psycopg|asyncpg` with TORPOR_URL
and DIRECT_URL (the backend's own port) set. It prints "awake", then "asleep", after the phase of
that name and waits for "go" on stdin before the next: the test puts the database to sleep and
checks it stayed asleep in between. Prints "ok" at the end; exits non-zero (an AssertionError or
a driver error) on any wrong answer.
"""

import asyncio
import os
import sys
import time

URL = os.environ["TORPOR_URL"]
DIRECT = os.environ["DIRECT_URL"]


def phase(name):
    """Tells the test a phase is done and waits until it lets us go on."""
    print(name, flush=True)
    line = sys.stdin.readline().strip()
    assert line == "go", f"expected go, got {line!r}"


def same(got, want, what):
    assert got == want, f"{what}: {got!r} != the server's {want!r}"


# --- psycopg2 --------------------------------------------------------------------------------


def psycopg2_check(conn):
    """What psycopg2 code sees of its usual pings. Autocommit off (the default): execute sends
    BEGIN then the statement, and the transaction ends with rollback() or commit(). Then the
    ping SQLAlchemy's pool_pre_ping does: autocommit on, SELECT 1, autocommit off."""
    import psycopg2.extensions as ext

    seen = []
    for sql, end in [
        ("SELECT 1", "rollback"),
        ("SELECT 1", "commit"),
        ("SELECT version()", "rollback"),
    ]:
        cur = conn.cursor()
        cur.execute(sql)
        seen.append(
            (
                cur.fetchall(),
                [(d.name, d.type_code) for d in cur.description],
                cur.statusmessage,
                conn.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS,
            )
        )
        getattr(conn, end)()
        seen.append(conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT 1")
    seen.append((cur.fetchall(), cur.statusmessage))
    conn.autocommit = False
    return seen


def with_psycopg2():
    import psycopg2
    import psycopg2.extensions as ext
    import sqlalchemy as sa

    # The first connection wakes the database: torpor learns what to answer this client's
    # startup with while the server runs.
    early = psycopg2.connect(URL)
    direct = psycopg2.connect(DIRECT)
    want = psycopg2_check(direct)
    direct.close()
    same(psycopg2_check(early), want, "awake")
    # SQLAlchemy's first connect asks the server about itself, while it runs.
    sa_url = URL.replace("postgres://", "postgresql+psycopg2://", 1)
    # pool_recycle=1: a connection older than a second is replaced at its next checkout, as
    # pools do with connections that have lived their time.
    engine = sa.create_engine(
        sa_url, pool_pre_ping=True, pool_size=1, max_overflow=0, pool_recycle=1
    )
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT 1")).scalar() == 1
    phase("awake")

    same(psycopg2_check(early), want, "parked connection")
    for i in range(2):
        c = psycopg2.connect(URL)
        same(psycopg2_check(c), want, f"new connection {i}")
        c.close()
    pids = set()
    for _ in range(5):
        # Checkout pings (pool_pre_ping), the statement runs in a transaction SQLAlchemy
        # began, and close() rolls it back.
        with engine.connect() as c:
            pids.add(c.connection.dbapi_connection.info.backend_pid)
            assert c.execute(sa.text("SELECT 1")).scalar() == 1
        time.sleep(0.6)
    assert len(pids) >= 2, f"pool_recycle replaced no connection: {pids}"
    # A transaction begun while asleep, still open at the wake.
    held = psycopg2.connect(URL)
    cur = held.cursor()
    cur.execute("SELECT 1")
    assert held.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS
    phase("asleep")

    # The server holds the transaction torpor began for the client: SAVEPOINT works only
    # inside one (psycopg2 sends no BEGIN of its own now, it knows one is open).
    cur.execute("SAVEPOINT s")
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    assert cur.fetchone() == (1,)
    held.rollback()
    held.close()
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar() >= 1
    engine.dispose()
    early.close()


# --- psycopg 3 -------------------------------------------------------------------------------


def psycopg_check(conn):
    """psycopg 3's usual pings: SELECT 1 (autocommit off: BEGIN, then rollback), and the check
    psycopg_pool runs on a connection (autocommit on, the empty query)."""
    from psycopg_pool import ConnectionPool

    seen = []
    for sql in ["SELECT 1", "SELECT version()", "SHOW server_version"]:
        cur = conn.execute(sql)
        desc = [(d.name, d.type_code) for d in cur.description]
        seen.append((cur.fetchall(), desc, cur.statusmessage))
        conn.rollback()
    ConnectionPool.check_connection(conn)
    seen.append(str(conn.info.transaction_status))
    return seen


def with_psycopg():
    import psycopg
    from psycopg_pool import ConnectionPool

    early = psycopg.connect(URL)
    with psycopg.connect(DIRECT) as direct:
        want = psycopg_check(direct)
    same(psycopg_check(early), want, "awake")
    # max_lifetime=1: the pool replaces each connection after about a second; check= pings a
    # connection each time it is handed out.
    pool = ConnectionPool(
        URL.replace("postgres://", "postgresql://", 1),
        min_size=1,
        max_size=1,
        max_lifetime=1.0,
        check=ConnectionPool.check_connection,
        open=True,
    )
    pool.wait()
    phase("awake")

    same(psycopg_check(early), want, "parked connection")
    for i in range(2):
        with psycopg.connect(URL) as c:
            same(psycopg_check(c), want, f"new connection {i}")
    pids = set()
    end = time.monotonic() + 3
    while time.monotonic() < end:
        with pool.connection() as c:
            pids.add(c.info.backend_pid)
            assert c.execute("SELECT 1").fetchone() == (1,)
        time.sleep(0.2)
    assert len(pids) >= 2, f"max_lifetime replaced no connection: {pids}"
    late = psycopg.connect(URL, autocommit=True)
    late.execute("SET application_name = 'idle psycopg'")
    phase("asleep")

    # The connection's SET, answered while asleep, holds on the server.
    app = late.execute("SELECT current_setting('application_name')").fetchone()
    assert app == ("idle psycopg",), app
    late.close()
    pool.close()
    early.close()


# --- asyncpg ---------------------------------------------------------------------------------


async def asyncpg_check(conn):
    """asyncpg's usual pings: fetchval (a named statement, Parse + Describe + Flush on first
    use, then Bind/Execute/Sync from its cache) and execute (the simple protocol)."""
    seen = []
    for _ in range(3):
        seen.append(await conn.fetchval("SELECT 1"))
    row = await conn.fetchrow("SELECT 1")
    seen.append(list(row.items()))
    seen.append(await conn.execute("SELECT 1"))
    seen.append(await conn.fetchval("SELECT version()"))
    return seen


async def with_asyncpg():
    import asyncpg

    loop = asyncio.get_running_loop()
    early = await asyncpg.connect(URL)
    direct = await asyncpg.connect(DIRECT)
    want = await asyncpg_check(direct)
    await direct.close()
    same(await asyncpg_check(early), want, "awake")
    await loop.run_in_executor(None, phase, "awake")

    same(await asyncpg_check(early), want, "parked connection")
    for i in range(2):
        c = await asyncpg.connect(URL)
        same(await asyncpg_check(c), want, f"new connection {i}")
        await c.close()
    # A pool hands each connection back clean: SELECT pg_advisory_unlock_all(); CLOSE ALL;
    # UNLISTEN *; RESET ALL; on every release.
    pool = await asyncpg.create_pool(URL, min_size=1, max_size=1)
    for i in range(3):
        async with pool.acquire() as c:
            same(await asyncpg_check(c), want, f"pooled connection {i}")
    await pool.close()
    late = await asyncpg.connect(URL)
    assert await late.fetchval("SELECT 1") == 1
    await loop.run_in_executor(None, phase, "asleep")

    # A real query wakes the database; the statement prepared while it slept is the server's
    # now: asyncpg binds its cached name without preparing it again.
    assert await late.fetchval("SELECT current_setting('server_version_num')::int") >= 150000
    assert await late.fetchval("SELECT 1") == 1
    names = await late.fetchval(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT 1'"
    )
    assert names == 1, names
    await late.close()
    await early.close()


CLIENTS = {
    "psycopg2": with_psycopg2,
    "psycopg": with_psycopg,
    "asyncpg": lambda: asyncio.run(with_asyncpg()),
}

CLIENTS[sys.argv[1]]()
print("ok", flush=True)
