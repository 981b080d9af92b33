// node-postgres (pg + pg-cursor) against a lakecube server: simple and parameterised queries
// and a cursor reading in pages (Execute with a row limit). Cube answers are compared with
// hand-written SQL over the lake tables. Usage: node client.js PORT
const { Client } = require('pg');
const Cursor = require('pg-cursor');
const assert = require('assert');

(async () => {
  const client = new Client({ host: '127.0.0.1', port: Number(process.argv[2]), user: 'lakecube', database: 'lakecube' });
  await client.connect();
  const cube = await client.query('SELECT store_format, SUM(transactions) AS t FROM retail GROUP BY store_format ORDER BY store_format');
  const raw = await client.query(
    'SELECT s.store_format, SUM(t.transactions) AS t FROM lake.traffic t JOIN lake.stores s USING (store_id) GROUP BY 1 ORDER BY 1');
  assert.deepStrictEqual(cube.rows, raw.rows);
  assert.ok(raw.rows.length >= 3);
  assert.deepStrictEqual(cube.fields.map((f) => f.name), ['store_format', 't']);
  console.log('ok: cube = lake by store format');

  const p = await client.query('SELECT SUM(footfall) AS f FROM retail WHERE region = $1 AND period >= $2', ['Grand Est', '2024-01-01']);
  const q = await client.query(
    'SELECT SUM(t.footfall) AS f FROM lake.traffic t JOIN lake.stores s USING (store_id) WHERE s.region = $1 AND t.ts >= $2',
    ['Grand Est', '2024-01-01']);
  assert.strictEqual(p.rows[0].f, q.rows[0].f);
  assert.ok(Number(p.rows[0].f) > 0);
  console.log('ok: parameterised query');

  const cursor = client.query(new Cursor('SELECT store_id, ts FROM lake.traffic WHERE ts < $1', ['2024-02-01']));
  let n = 0;
  for (;;) {
    const rows = await cursor.read(700);
    if (rows.length === 0) break;
    n += rows.length;
  }
  await cursor.close();
  const expected = await client.query("SELECT count(*) AS n FROM lake.traffic WHERE ts < '2024-02-01'");
  assert.strictEqual(String(n), String(expected.rows[0].n));
  console.log(`ok: pg-cursor read ${n} rows`);
  await client.end();
  console.log('node-postgres: all checks passed');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
