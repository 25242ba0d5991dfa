import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type DemoUpstreams, demoConfigYaml, startDemoUpstreams } from '../../src/demo/demo.js';
import { type Running, request, startHerald } from '../helpers/harness.js';

describe('embedded demo', () => {
  let up: DemoUpstreams;
  let h: Running;
  before(async () => {
    up = await startDemoUpstreams();
    h = await startHerald(demoConfigYaml({ listenerPort: 0, adminPort: 0 }, up.ports));
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('answers from v1 or v2, split about 90/10', async () => {
    const counts = { v1: 0, v2: 0 };
    for (let i = 0; i < 300; i++) {
      const r = await request(h.port('front'), { path: '/hello' });
      assert.equal(r.status, 200);
      const v = JSON.parse(r.body).version as 'v1' | 'v2';
      counts[v]++;
    }
    // 300 draws at p = 0.1: v2 lands in [10, 55] with overwhelming probability.
    assert.ok(counts.v2 >= 10 && counts.v2 <= 55, JSON.stringify(counts));
    assert.equal(counts.v1 + counts.v2, 300);
  });

  it('routes /v1 and /v2 by prefix and sets Envoy headers', async () => {
    const r = await request(h.port('front'), { path: '/v2/items' });
    assert.equal(JSON.parse(r.body).version, 'v2');
    assert.match(JSON.parse(r.body).request_id, /^[0-9a-f-]{36}$/);
    assert.equal(JSON.parse(r.body).forwarded_proto, 'http');
    assert.match(String(r.headers['x-envoy-upstream-service-time']), /^\d+$/);
    assert.equal(r.headers.server, 'envoy');
  });

  it('admin /ready says LIVE', async () => {
    const r = await request(h.adminPort, { path: '/ready' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'LIVE\n');
  });
});
