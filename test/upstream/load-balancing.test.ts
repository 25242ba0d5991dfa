// Load balancing over real sockets: round robin, weights, random and least
// request, health status, priorities with Envoy's overprovisioning factor,
// panic mode, and a STRICT_DNS cluster.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type EchoUpstream, httpConfig, type Obj, sockAddr, startEcho } from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

interface Ep {
  port: number;
  weight?: number;
  health?: string;
}

/** A STATIC cluster with per-endpoint weight/health and one locality per priority. */
function lbCluster(name: string, priorities: Ep[][], extra: Obj = {}): Obj {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    ...extra,
    load_assignment: {
      cluster_name: name,
      endpoints: priorities.map((eps, priority) => ({
        priority,
        lb_endpoints: eps.map((e) => ({
          endpoint: { address: sockAddr(e.port) },
          ...(e.weight !== undefined ? { load_balancing_weight: e.weight } : {}),
          ...(e.health !== undefined ? { health_status: e.health } : {}),
        })),
      })),
    },
  };
}

describe('load balancing', () => {
  const ups: EchoUpstream[] = [];
  let h: Running;
  const names = ['u0', 'u1', 'u2', 'u3'];
  before(async () => {
    for (const n of names) ups.push(await startEcho(n));
    const p = ups.map((u) => u.port);
    const route = (prefix: string, clusterName: string): Obj => ({
      match: { prefix },
      route: { cluster: clusterName },
    });
    h = await startHerald(
      httpConfig({
        routes: [
          route('/rr', 'rr'),
          route('/weighted', 'weighted'),
          route('/random', 'random'),
          route('/least', 'least'),
          route('/prio', 'prio'),
          route('/failover', 'failover'),
          route('/partial', 'partial'),
          route('/unhealthy', 'unhealthy'),
          route('/panic', 'panic'),
          route('/dns', 'dns'),
        ],
        clusters: [
          lbCluster('rr', [[{ port: p[0]! }, { port: p[1]! }, { port: p[2]! }]], {
            lb_policy: 'ROUND_ROBIN',
          }),
          lbCluster('weighted', [
            [
              { port: p[0]!, weight: 3 },
              { port: p[1]!, weight: 1 },
            ],
          ]),
          lbCluster('random', [[{ port: p[0]! }, { port: p[1]! }, { port: p[2]! }]], { lb_policy: 'RANDOM' }),
          lbCluster('least', [[{ port: p[0]! }, { port: p[1]! }, { port: p[2]! }]], {
            lb_policy: 'LEAST_REQUEST',
          }),
          lbCluster('prio', [[{ port: p[0]! }], [{ port: p[3]! }]]),
          lbCluster('failover', [[{ port: p[0]!, health: 'UNHEALTHY' }], [{ port: p[3]! }]]),
          // Priority 0 is 50% healthy: 50% x 1.4 = 70% of the load stays there, 30% spills to priority 1.
          lbCluster('partial', [[{ port: p[0]! }, { port: p[1]!, health: 'UNHEALTHY' }], [{ port: p[3]! }]]),
          lbCluster('unhealthy', [[{ port: p[0]! }, { port: p[1]! }, { port: p[2]!, health: 'UNHEALTHY' }]]),
          // One of three healthy (33% < 50% panic threshold): traffic goes to all hosts.
          lbCluster('panic', [
            [{ port: p[0]! }, { port: p[1]!, health: 'UNHEALTHY' }, { port: p[2]!, health: 'UNHEALTHY' }],
          ]),
          {
            name: 'dns',
            type: 'STRICT_DNS',
            connect_timeout: '1s',
            dns_lookup_family: 'V4_ONLY',
            load_assignment: {
              cluster_name: 'dns',
              endpoints: [{ lb_endpoints: [{ endpoint: { address: sockAddr(p[3]!, 'localhost') } }] }],
            },
          },
        ],
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of ups) await u.close();
  });

  /** Sends n sequential requests to `path` and returns the upstream names in order. */
  async function pick(path: string, n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await request(h.port(), { path });
      assert.equal(r.status, 200, r.body);
      out.push(JSON.parse(r.body).name as string);
    }
    return out;
  }

  function tally(seq: string[]): Record<string, number> {
    const c: Record<string, number> = {};
    for (const s of seq) c[s] = (c[s] ?? 0) + 1;
    return c;
  }

  it('ROUND_ROBIN over 3 hosts: exactly 10 each of 30, in strict rotation', async () => {
    const seq = await pick('/rr', 30);
    assert.deepEqual(tally(seq), { u0: 10, u1: 10, u2: 10 });
    for (let i = 3; i < seq.length; i++) assert.equal(seq[i], seq[i - 3], seq.join(','));
  });

  it('ROUND_ROBIN with load_balancing_weight 3:1 sends about 75/25', async () => {
    const c = tally(await pick('/weighted', 40));
    assert.equal((c.u0 ?? 0) + (c.u1 ?? 0), 40);
    assert.ok((c.u0 ?? 0) >= 27 && (c.u0 ?? 0) <= 33, JSON.stringify(c));
  });

  it('RANDOM reaches every host', async () => {
    const c = tally(await pick('/random', 60));
    assert.deepEqual(Object.keys(c).sort(), ['u0', 'u1', 'u2']);
  });

  it('LEAST_REQUEST reaches every host', async () => {
    const c = tally(await pick('/least', 60));
    assert.deepEqual(Object.keys(c).sort(), ['u0', 'u1', 'u2']);
  });

  it('a healthy priority 0 takes all traffic; priority 1 gets none', async () => {
    const before = ups[3]!.seen.length;
    const c = tally(await pick('/prio', 20));
    assert.deepEqual(c, { u0: 20 });
    assert.equal(ups[3]!.seen.length, before);
  });

  it('an unhealthy priority 0 fails over to priority 1', async () => {
    assert.deepEqual(tally(await pick('/failover', 10)), { u3: 10 });
  });

  it('a 50% healthy priority 0 keeps about 70% (overprovisioning 1.4), the rest spills over', async () => {
    const c = tally(await pick('/partial', 200));
    assert.equal(c.u1, undefined, 'the unhealthy host gets nothing');
    // Binomial(200, 0.3): mean 60, sd 6.5.
    assert.ok((c.u3 ?? 0) >= 30 && (c.u3 ?? 0) <= 90, JSON.stringify(c));
    assert.equal((c.u0 ?? 0) + (c.u3 ?? 0), 200);
  });

  it('an endpoint with health_status UNHEALTHY gets no traffic', async () => {
    const c = tally(await pick('/unhealthy', 20));
    assert.deepEqual(c, { u0: 10, u1: 10 });
  });

  it('below the panic threshold, every host gets traffic and lb_healthy_panic counts', async () => {
    const c = tally(await pick('/panic', 30));
    assert.deepEqual(c, { u0: 10, u1: 10, u2: 10 });
    assert.equal(await stat(h.adminPort, 'cluster.panic.lb_healthy_panic'), 30);
  });

  it('STRICT_DNS resolves localhost (V4_ONLY) to 127.0.0.1', async () => {
    assert.deepEqual(tally(await pick('/dns', 3)), { u3: 3 });
    assert.equal(await stat(h.adminPort, 'cluster.dns.membership_total'), 1);
    const clusters = await request(h.adminPort, { path: '/clusters' });
    assert.match(
      clusters.body,
      new RegExp(`^dns::127\\.0\\.0\\.1:${ups[3]!.port}::hostname::localhost$`, 'm'),
    );
  });
});
