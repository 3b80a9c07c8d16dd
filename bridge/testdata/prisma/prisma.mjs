// Prisma with @prisma/adapter-neon against dbalproxy's bridge: PrismaNeon
// over WebSocket and PrismaNeonHttp over HTTP. Run by bridge/node_test.go
// with BRIDGE_ADDR and DB set, after `prisma generate`; prints "ok".
import { PrismaClient } from '@prisma/client';
import { PrismaNeon, PrismaNeonHttp } from '@prisma/adapter-neon';
import { neonConfig } from '@neondatabase/serverless';
import ws from 'ws';
import assert from 'node:assert/strict';

neonConfig.webSocketConstructor = ws;
neonConfig.wsProxy = () => `${process.env.BRIDGE_ADDR}/v2`;
neonConfig.useSecureWebSocket = false; // the test bridge has no TLS
neonConfig.fetchEndpoint = () => `http://${process.env.BRIDGE_ADDR}/sql`;
const url = (login) => `postgres://${login}:${login}@db.example.com/${process.env.DB}`;

// The driver error under Prisma's, with the SQLSTATE and the DETAIL.
function dbError(e) {
  return e?.meta?.driverAdapterError?.cause ?? { code: e?.code, message: e?.message, detail: '' };
}

async function main() {
  const alice = new PrismaClient({ adapter: new PrismaNeon({ connectionString: url('alice') }) });
  // A row filter.
  assert.deepEqual((await alice.users.findMany({ select: { id: true } })).map((u) => u.id), ['u_alice']);
  // A denial, with the decision id in the driver error's detail.
  try {
    await alice.page_views.deleteMany();
    assert.fail('alice deleted page_views');
  } catch (e) {
    const c = dbError(e);
    assert.equal(c.code, '42501', e.message);
    assert.match(c.detail, /decision_id=\w+/);
  }
  await alice.$disconnect();

  const carol = new PrismaClient({ adapter: new PrismaNeon({ connectionString: url('carol') }) });
  // An interactive transaction that throws rolls back.
  await assert.rejects(
    carol.$transaction(async (tx) => {
      await tx.page_views.update({ where: { slug: 'home' }, data: { title: 'Changed' } });
      assert.equal((await tx.page_views.findUnique({ where: { slug: 'home' } })).title, 'Changed');
      throw new Error('roll back');
    }),
    /roll back/,
  );
  assert.equal((await carol.page_views.findUnique({ where: { slug: 'home' } })).title, 'Home');
  // A batch transaction commits.
  await carol.$transaction([
    carol.page_views.update({ where: { slug: 'about' }, data: { title: 'About' } }),
    carol.page_views.update({ where: { slug: 'about' }, data: { title: 'About dbalproxy' } }),
  ]);
  assert.equal((await carol.page_views.findUnique({ where: { slug: 'about' } })).title, 'About dbalproxy');
  await carol.$disconnect();

  // Over HTTP (neon() under the hood).
  const http = new PrismaClient({ adapter: new PrismaNeonHttp(url('alice'), {}) });
  assert.deepEqual((await http.users.findMany({ select: { id: true } })).map((u) => u.id), ['u_alice']);
  try {
    await http.page_views.deleteMany();
    assert.fail('alice deleted page_views over HTTP');
  } catch (e) {
    assert.equal(e.code, '42501', e.message);
  }
}

main().then(
  () => {
    console.log('ok');
    process.exit(0);
  },
  (e) => {
    console.error(e.stack ?? e);
    process.exit(1);
  },
);
