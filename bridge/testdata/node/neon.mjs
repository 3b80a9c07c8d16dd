// The Neon serverless driver against dbalproxy's bridge: Pool and Client
// over WebSocket, neon() over HTTP. Run by bridge/node_test.go with
// BRIDGE_ADDR (host:port of the bridge) and DB (the database) set; prints
// "ok" or fails with the first broken expectation.
import { Pool, Client, neon, neonConfig } from '@neondatabase/serverless';
import ws from 'ws';
import assert from 'node:assert/strict';

const addr = process.env.BRIDGE_ADDR;
const db = process.env.DB;
const url = (login, password = login) => `postgres://${login}:${password}@db.example.com/${db}`;

// The few lines a user writes to point the driver at dbalproxy.
neonConfig.webSocketConstructor = ws;
neonConfig.wsProxy = () => `${addr}/v2`;
// BRIDGE_TLS=1: the bridge serves wss and https (its CA in NODE_EXTRA_CA_CERTS).
const secure = process.env.BRIDGE_TLS === '1';
neonConfig.useSecureWebSocket = secure;
neonConfig.fetchEndpoint = () => `${secure ? 'https' : 'http'}://${addr}/sql`;

async function expectError(p, code, what) {
  try {
    await p;
  } catch (e) {
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return e;
  }
  assert.fail(`${what}: no error, want ${code}`);
}

const steps = {
  async pool() {
    const pool = new Pool({ connectionString: url('alice') });
    // A row filter: alice sees her own user row only.
    const { rows } = await pool.query('SELECT id FROM users ORDER BY id');
    assert.deepEqual(rows, [{ id: 'u_alice' }]);
    const r = await pool.query('SELECT $1::int + 1 AS n, $2::text AS s', [41, 'x']);
    assert.deepEqual(r.rows, [{ n: 42, s: 'x' }]);
    // A denial, with the audit record's decision id.
    const e = await expectError(pool.query('DELETE FROM packages'), '42501', 'DELETE FROM packages');
    assert.match(e.detail, /decision_id=\w+/);
    // The pooled connection goes on after the error.
    assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1);
    await pool.end();
  },

  async client() {
    const c = new Client(url('carol'));
    await c.connect();
    // A transaction: the update is seen inside and gone after ROLLBACK.
    await c.query('BEGIN');
    await c.query("UPDATE page_views SET title = 'Changed' WHERE slug = 'home'");
    assert.equal((await c.query("SELECT title FROM page_views WHERE slug = 'home'")).rows[0].title, 'Changed');
    await c.query('ROLLBACK');
    assert.equal((await c.query("SELECT title FROM page_views WHERE slug = 'home'")).rows[0].title, 'Home');
    await c.end();
  },

  async scramWithoutPipelining() {
    // pipelineConnect false: the driver does SCRAM itself.
    const c = new Client(url('bob'));
    c.neonConfig.pipelineConnect = false;
    await c.connect();
    assert.equal((await c.query('SELECT current_user IS NOT NULL AS ok')).rows[0].ok, true);
    await c.end();
  },

  async wrongPassword() {
    // With pipelineConnect "password" (the default) connect() resolves at
    // once; the login's error comes with the first query.
    const c = new Client(url('alice', 'wrong'));
    c.on('error', () => {});
    await expectError(c.connect().then(() => c.query('SELECT 1')), '28P01', 'wrong password');
  },

  async timeout() {
    // The user role's 5 s statement timeout of the shipped policies.
    const c = new Client(url('alice'));
    await c.connect();
    await expectError(c.query('SELECT pg_sleep(6)'), '57014', 'pg_sleep(6) as alice');
    assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
    await c.end();
  },

  async cancel() {
    // node-postgres cancels through a second connection: a second WebSocket.
    const c = new Client(url('carol'));
    await c.connect();
    const q = c.query('SELECT pg_sleep(20)');
    await new Promise((r) => setTimeout(r, 300));
    new Client(url('carol')).cancel(c, c.activeQuery);
    await expectError(q, '57014', 'cancelled pg_sleep');
    await c.end();
  },

  async http() {
    const sql = neon(url('alice'));
    assert.deepEqual(await sql`SELECT id FROM users`, [{ id: 'u_alice' }]);
    const n = 7;
    assert.deepEqual(await sql`SELECT ${n}::int * 6 AS v, ${'a b'} AS s, ${null}::text AS z`, [{ v: 42, s: 'a b', z: null }]);
    assert.deepEqual(await sql.query('SELECT $1::int AS v', [5], { arrayMode: true }), [[5]]);
    const full = await sql.query('SELECT id FROM users', [], { fullResults: true });
    assert.equal(full.command, 'SELECT');
    assert.equal(full.rowCount, 1);
    const e = await expectError(sql`DELETE FROM packages`, '42501', 'DELETE over HTTP');
    assert.match(e.detail, /decision_id=\w+/);
    await expectError(sql`SELECT 1/0`, '22012', 'division by zero over HTTP');
    await expectError(neon(url('alice', 'wrong'))`SELECT 1`, '28P01', 'wrong password over HTTP');
  },

  async httpTransaction() {
    const sql = neon(url('carol'));
    const [upd, sel] = await sql.transaction(
      [sql`UPDATE page_views SET title = 'Batch' WHERE slug = 'about'`, sql`SELECT title FROM page_views WHERE slug = 'about'`],
      { isolationLevel: 'Serializable' },
    );
    assert.deepEqual(upd, []);
    assert.deepEqual(sel, [{ title: 'Batch' }]);
    // A failing batch rolls back as a whole.
    await expectError(
      sql.transaction([sql`UPDATE page_views SET title = 'Lost' WHERE slug = 'about'`, sql`SELECT 1/0`]),
      '22012',
      'failing batch',
    );
    assert.deepEqual(await sql`SELECT title FROM page_views WHERE slug = 'about'`, [{ title: 'Batch' }]);
    await expectError(
      sql.transaction([sql`UPDATE page_views SET title = 'RO' WHERE slug = 'about'`], { readOnly: true }),
      '25006',
      'write in a read-only batch',
    );
  },
};

const only = process.argv.slice(2);
for (const [name, fn] of Object.entries(steps)) {
  if (only.length && !only.includes(name)) continue;
  try {
    await fn();
  } catch (e) {
    console.error(`${name}: ${e.stack ?? e}`);
    process.exit(1);
  }
}
console.log('ok');
process.exit(0);
