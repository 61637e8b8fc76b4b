// mysql2's default connect and ping, for tests/tests/mysql_idle_clients.rs. With TORPOR_HOST,
// TORPOR_PORT, TORPOR_USER, TORPOR_PASSWORD and TORPOR_DB set: connects, pings, prints "asleep"
// and waits for a line on stdin; then reads what the connection set up and prints it as JSON.
const mysql = require('mysql2/promise');
const readline = require('readline');

const STATE = 'SELECT @@autocommit, @@character_set_client, @@character_set_connection, ' +
  '@@character_set_results, @@collation_connection, @@time_zone, @@sql_mode';

async function main() {
  const conn = await mysql.createConnection({
    host: process.env.TORPOR_HOST,
    port: Number(process.env.TORPOR_PORT),
    user: process.env.TORPOR_USER,
    password: process.env.TORPOR_PASSWORD,
    database: process.env.TORPOR_DB,
  });
  for (let i = 0; i < 5; i++) {
    await conn.ping();
  }
  console.log('asleep');
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once('line', resolve));
  rl.close();
  const [rows] = await conn.query({ sql: STATE, rowsAsArray: true });
  console.log(JSON.stringify(rows[0].map(String)));
  await conn.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
