// request_mirror_policies: the mirror cluster gets a copy with "-shadow" on the
// host, the client only ever sees the primary's answer, and a failing mirror
// changes nothing for the client.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('request mirroring', () => {
  let primary: Upstream;
  let shadow: Upstream;
  let h: Running;
  before(async () => {
    primary = await startUpstream('primary');
    shadow = await startUpstream('shadow', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        (req as unknown as { body: string }).body = Buffer.concat(chunks).toString();
        res.writeHead(500);
        res.end('shadow says no');
      });
    });
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /mirrored }
  route:
    cluster: primary
    request_mirror_policies: [{ cluster: shadow }]
- match: { prefix: /half }
  route:
    cluster: primary
    request_mirror_policies: [{ cluster: shadow, runtime_fraction: { default_value: { numerator: 0 } } }]
- match: { prefix: /dead }
  route:
    cluster: primary
    request_mirror_policies: [{ cluster: dead, disable_shadow_host_suffix_append: true }]`,
        clusters: `${staticCluster('primary', [primary.port])}
${staticCluster('shadow', [shadow.port])}
${staticCluster('dead', [1])}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await primary.close();
    await shadow.close();
  });

  it('mirrors a POST with its body to the shadow cluster, host suffixed with -shadow', async () => {
    const r = await request(h.port(), {
      path: '/mirrored/x?q=1',
      method: 'POST',
      headers: { host: 'api.example:8080', 'content-type': 'text/plain' },
      body: 'payload',
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'primary');
    await waitFor(
      () => shadow.seen.length === 1 && (shadow.seen[0] as unknown as { body?: string }).body !== undefined,
    );
    const s = shadow.seen[0]!;
    assert.equal(s.url, '/mirrored/x?q=1');
    assert.equal(s.method, 'POST');
    assert.equal(s.headers.host, 'api.example-shadow:8080');
    assert.equal((s as unknown as { body: string }).body, 'payload');
    assert.equal(primary.seen[primary.seen.length - 1]!.headers.host, 'api.example:8080');
    await waitFor(() => false, 50).catch(() => {});
    assert.equal(await stat(h.adminPort, 'cluster.shadow.upstream_rq_500'), 1);
  });

  it('a runtime_fraction of 0 mirrors nothing', async () => {
    const before = shadow.seen.length;
    for (let i = 0; i < 5; i++) assert.equal((await request(h.port(), { path: '/half' })).status, 200);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(shadow.seen.length, before);
  });

  it('a mirror that cannot connect does not affect the client', async () => {
    const r = await request(h.port(), { path: '/dead' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'primary');
  });
});
