// node-pg (a Client and a pg.Pool) against a sleeping database: connecting and the usual health
// checks (SELECT 1, the empty query) must be answered without waking it, with the answers the
// server itself gives.
//
// Run by tests/tests/pg_idle_clients.rs with TORPOR_URL, DIRECT_URL (the backend's own port) and
// NODE_PATH set. It prints "awake", then "asleep", after the phase of that name and waits for
// "go" on stdin before the next: the test puts the database to sleep and checks it stayed asleep
// in between. Prints "ok" at the end; exits non-zero on any wrong answer or driver error.
'use strict';

const assert = require('assert');
const readline = require('readline');
const pg = require('pg');

const URL = process.env.TORPOR_URL;
const DIRECT = process.env.DIRECT_URL;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Tells the test a phase is done and waits until it lets us go on. */
async function phase(name) {
  process.stdout.write(name + '\n');
  const { value } = await lines.next();
  assert.strictEqual(value, 'go');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What node-pg code sees of its usual pings, with the simple protocol (no parameters). */
async function check(client) {
  const seen = [];
  for (const sql of ['SELECT 1', '', ';', 'SELECT version()']) {
    const r = await client.query(sql);
    seen.push({
      sql,
      command: r.command,
      rowCount: r.rowCount,
      rows: r.rows,
      fields: r.fields.map((f) => [f.name, f.dataTypeID, f.dataTypeSize, f.format]),
    });
  }
  return seen;
}

async function connect(url) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

async function main() {
  // The first connection wakes the database: torpor learns what to answer this client's
  // startup with while the server runs.
  const early = await connect(URL);
  const direct = await connect(DIRECT);
  const want = await check(direct);
  await direct.end();
  assert.deepStrictEqual(await check(early), want, 'awake');
  // maxLifetimeSeconds: each connection is replaced after a second, as pools do.
  const pool = new pg.Pool({ connectionString: URL, max: 2, maxLifetimeSeconds: 1 });
  assert.deepStrictEqual(await check(pool), want, 'pool, awake');
  await phase('awake');

  assert.deepStrictEqual(await check(early), want, 'parked connection');
  for (let i = 0; i < 2; i++) {
    const c = await connect(URL);
    assert.deepStrictEqual(await check(c), want, `new connection ${i}`);
    await c.end();
  }
  // The pool: pool.query checks a client out, runs, releases it. A client of the pool, to see
  // it replaced: its processID is torpor's stable key for that connection.
  const pids = new Set();
  const end = Date.now() + 3000;
  while (Date.now() < end) {
    assert.deepStrictEqual(await check(pool), want, 'pool');
    const c = await pool.connect();
    pids.add(c.processID);
    assert.deepStrictEqual((await c.query('SELECT 1')).rows, [{ '?column?': 1 }]);
    c.release();
    await sleep(200);
  }
  assert.ok(pids.size >= 2, `maxLifetimeSeconds replaced no connection: ${[...pids]}`);
  process.stdout.write(`pool connections ${pids.size}\n`);
  await phase('asleep');

  // A real query wakes the database.
  const r = await early.query("SELECT current_setting('server_version_num')::int AS v");
  assert.ok(r.rows[0].v >= 150000, JSON.stringify(r.rows));
  await early.end();
  await pool.end();
  process.stdout.write('ok\n');
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
