"""asyncpg and psycopg 3 through torpor while the cluster is put to sleep between queries.

Run by tests/tests/pg_python_clients.rs with TORPOR_URL, TORPOR_ADMIN and TORPOR_CLUSTER set.
Exits non-zero (an AssertionError or a driver error) on any lost state or client-visible error.
"""

import asyncio
import json
import os
import urllib.request

import asyncpg
import psycopg

URL = os.environ["TORPOR_URL"]
ADMIN = os.environ["TORPOR_ADMIN"]
CLUSTER = os.environ["TORPOR_CLUSTER"]


def sleep_cluster():
    req = urllib.request.Request(f"{ADMIN}/api/clusters/{CLUSTER}/sleep", method="POST")
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
    with urllib.request.urlopen(f"{ADMIN}/api/clusters") as r:
        st = [c for c in json.load(r) if c["name"] == CLUSTER][0]
    assert st["state"] == "standby" and st["backend_pid"] is None, st


async def with_asyncpg():
    c = await asyncpg.connect(URL)
    await c.execute("create temp table a(id serial primary key, v text)")
    await c.executemany("insert into a(v) values($1)", [(f"x{i}",) for i in range(100)])
    # asyncpg names and caches its statements on the protocol level.
    stmt = await c.prepare("select count(*), max(id) from a where v like $1")
    await c.execute("set search_path = pg_catalog, public")
    got = []
    await c.add_listener("ch", lambda *a: got.append(a[3]))
    for i in range(3):
        await asyncio.get_running_loop().run_in_executor(None, sleep_cluster)
        r = await stmt.fetchrow("%")
        assert tuple(r) == (100 + i, 100 + i), r
        await c.execute("insert into a(v) values('y')")
        assert await c.fetchval("show search_path") == "pg_catalog, public"
        assert await c.fetchval("select $1::int + 1", 41) == 42
    other = await asyncpg.connect(URL)
    await other.execute("notify ch, 'hello'")
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.05)
    assert got == ["hello"], got
    async with c.transaction():
        await c.execute("insert into a(v) values('t')")
    assert await c.fetchval("select count(*) from a") == 104
    await c.close()
    await other.close()


def with_psycopg():
    psql_url = URL.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(psql_url, prepare_threshold=1, autocommit=True) as c:
        c.execute("create temp table p(id int generated always as identity, b bytea)")
        with c.cursor() as cur:
            with cur.copy("copy p(b) from stdin") as cp:
                for i in range(1000):
                    cp.write_row([bytes([i % 256]) * 10])
        for i in range(3):
            # prepare_threshold=1: a server-side prepared statement from the second run on.
            r = c.execute("select count(*), sum(length(b)) from p where id > %s", (0,)).fetchone()
            assert r == (1000 + i, 10000 + 10 * i), r
            sleep_cluster()
            c.execute("insert into p(b) values (%s)", (b"0123456789",))
        with c.pipeline():
            for i in range(5):
                c.execute("select %s::int", (i,))
        assert c.execute("select max(id) from p").fetchone() == (1003,)


asyncio.run(with_asyncpg())
with_psycopg()
print("python clients ok")
