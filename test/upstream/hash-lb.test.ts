import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  type Upstream,
} from '../helpers/harness.js';

function cluster(name: string, ports: number[], policy: string, extra = ''): string {
  return `- name: ${name}
  type: STATIC
  connect_timeout: 1s
  lb_policy: ${policy}
${extra}
  load_assignment:
    cluster_name: ${name}
    endpoints:
    - lb_endpoints:
${ports.map((p) => `      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${p} } } }`).join('\n')}`;
}

describe('consistent-hash load balancing (RING_HASH, MAGLEV) with hash_policy', () => {
  const ups: Upstream[] = [];
  let h: Running;
  before(async () => {
    for (let i = 0; i < 4; i++) ups.push(await startUpstream(`u${i}`));
    const ports = ups.map((u) => u.port);
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /ring/header }
  route: { cluster: ring, hash_policy: [{ header: { header_name: x-user } }] }
- match: { prefix: /ring/cookie }
  route: { cluster: ring, hash_policy: [{ cookie: { name: affinity, ttl: 60s, path: / } }] }
- match: { prefix: /ring/query }
  route: { cluster: ring, hash_policy: [{ query_parameter: { name: user } }] }
- match: { prefix: /ring/none }
  route: { cluster: ring }
- match: { prefix: /maglev }
  route: { cluster: maglev, hash_policy: [{ header: { header_name: x-user } }] }
- match: { prefix: /typed }
  route: { cluster: typed, hash_policy: [{ header: { header_name: x-user } }] }`,
        clusters: `${cluster('ring', ports, 'RING_HASH', '  ring_hash_lb_config: { minimum_ring_size: 128 }')}
${cluster('maglev', ports, 'MAGLEV', '  maglev_lb_config: { table_size: 251 }')}
${cluster(
  'typed',
  ports,
  'LOAD_BALANCING_POLICY_CONFIG',
  `  load_balancing_policy:
    policies:
    - typed_extension_config:
        name: envoy.load_balancing_policies.client_side_weighted_round_robin
        typed_config: { "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin }
    - typed_extension_config:
        name: envoy.load_balancing_policies.maglev
        typed_config: { "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev, table_size: 257 }`,
)}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of ups) await u.close();
  });

  async function hostFor(path: string, headers: Record<string, string> = {}): Promise<string> {
    const r = await request(h.port(), { path, headers });
    assert.equal(r.status, 200);
    return r.body;
  }

  // /typed: load_balancing_policy lists a policy Herald lacks first; the next (Maglev) is used.
  for (const prefix of ['/ring/header', '/maglev', '/typed']) {
    it(`${prefix}: the same x-user always reaches the same host, and users spread over hosts`, async () => {
      const seen = new Set<string>();
      for (let u = 0; u < 40; u++) {
        const first = await hostFor(prefix, { 'x-user': `user-${u}` });
        for (let k = 0; k < 3; k++) assert.equal(await hostFor(prefix, { 'x-user': `user-${u}` }), first);
        seen.add(first);
      }
      assert.ok(seen.size >= 3, `40 users reached ${seen.size} hosts`);
    });
  }

  it('query_parameter hashing is sticky per value', async () => {
    const a = await hostFor('/ring/query?user=alice');
    for (let k = 0; k < 5; k++) assert.equal(await hostFor('/ring/query?user=alice&x=1'), a);
  });

  it('a cookie policy with a ttl sets the cookie when absent, and the cookie then pins the host', async () => {
    const r = await request(h.port(), { path: '/ring/cookie' });
    const setCookie = r.headers['set-cookie']?.[0] ?? '';
    const m = /^affinity="([0-9a-f]+)"; Max-Age=60; Path=\/; HttpOnly$/.exec(setCookie);
    assert.ok(m, `set-cookie: ${setCookie}`);
    for (let k = 0; k < 5; k++)
      assert.equal(await hostFor('/ring/cookie', { cookie: `affinity=${m[1]}` }), r.body);
  });

  it('without a hash policy a ring-hash cluster spreads requests at random', async () => {
    const seen = new Set<string>();
    for (let k = 0; k < 40; k++) seen.add(await hostFor('/ring/none'));
    assert.ok(seen.size >= 3, `reached ${seen.size} hosts`);
  });
});
