// Circuit breakers over real sockets: remaining_* gauges, per-priority
// thresholds, per-host max_connections, max_requests on HTTP/2, the retry
// budget, and config errors.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import {
  adminGet,
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

async function until(cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('circuit breakers', () => {
  let slow: Upstream;
  let inFlight = 0;
  let h2: http2.Http2Server;
  let h2Port: number;
  let h2InFlight = 0;
  let h: Running;
  before(async () => {
    slow = await startUpstream('slow', (req, res) => {
      req.resume();
      inFlight++;
      setTimeout(() => {
        inFlight--;
        res.end('ok');
      }, 300);
    });
    h2 = http2.createServer((req, res) => {
      req.resume();
      h2InFlight++;
      setTimeout(() => {
        h2InFlight--;
        res.end('h2 ok');
      }, 300);
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    h2Port = (h2.address() as net.AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /high }
  route: { cluster: prio, priority: HIGH }
- match: { prefix: /default }
  route: { cluster: prio }
- match: { prefix: /perhost }
  route: { cluster: perhost }
- match: { prefix: /h2 }
  route: { cluster: h2 }
- match: { prefix: /tracked }
  route: { cluster: tracked }`,
        clusters: `${staticCluster(
          'prio',
          [slow.port],
          `circuit_breakers:
  thresholds:
  - { priority: DEFAULT, max_connections: 1, max_pending_requests: 1 }
  - { priority: HIGH, max_connections: 5, max_pending_requests: 5 }`,
        )}
${staticCluster('perhost', [slow.port], 'circuit_breakers: { per_host_thresholds: [{ max_connections: 1 }], thresholds: [{ max_pending_requests: 1 }] }')}
${staticCluster(
  'h2',
  [h2Port],
  `circuit_breakers: { thresholds: [{ max_requests: 2 }] }
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }`,
)}
${staticCluster('tracked', [slow.port], 'circuit_breakers: { thresholds: [{ max_connections: 3, max_pending_requests: 7, max_requests: 9, max_retries: 2, track_remaining: true }] }')}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await slow.close();
    await new Promise((r) => h2.close(r));
  });

  it('track_remaining: remaining_* gauges follow the load', async () => {
    const g = (n: string) => stat(h.adminPort, `cluster.tracked.circuit_breakers.default.${n}`);
    assert.equal(await g('remaining_cx'), 3);
    assert.equal(await g('remaining_pending'), 7);
    assert.equal(await g('remaining_rq'), 9);
    assert.equal(await g('remaining_retries'), 2);
    const p = request(h.port(), { path: '/tracked' });
    await until(async () => inFlight === 1);
    assert.equal(await g('remaining_cx'), 2);
    assert.equal(await g('remaining_rq'), 8);
    assert.equal((await p).status, 200);
    assert.equal(await g('remaining_rq'), 9);
    assert.equal(await stat(h.adminPort, 'cluster.prio.circuit_breakers.default.remaining_cx'), undefined);
  });

  it('priority HIGH routes use the HIGH thresholds and their own pools', async () => {
    const first = request(h.port(), { path: '/default/1' });
    await until(async () => inFlight === 1);
    const waiting = request(h.port(), { path: '/default/2' });
    await until(async () => (await stat(h.adminPort, 'cluster.prio.upstream_rq_pending_active')) === 1);
    // DEFAULT: one connection busy and one request waiting: overflow.
    const overflow = await request(h.port(), { path: '/default/3' });
    assert.equal(overflow.status, 503);
    assert.equal(overflow.headers['x-envoy-overloaded'], 'true');
    // HIGH has room.
    const high = await Promise.all([
      request(h.port(), { path: '/high/1' }),
      request(h.port(), { path: '/high/2' }),
    ]);
    assert.deepEqual(
      high.map((r) => r.status),
      [200, 200],
    );
    assert.equal((await first).status, 200);
    assert.equal((await waiting).status, 200);
    const clusters = (await adminGet(h.adminPort, '/clusters')).body;
    assert.match(clusters, /^prio::high_priority::max_connections::5$/m);
  });

  it('per_host_thresholds.max_connections bounds connections to each host', async () => {
    const first = request(h.port(), { path: '/perhost/1' });
    await until(async () => inFlight === 1);
    const waiting = request(h.port(), { path: '/perhost/2' });
    await until(async () => (await stat(h.adminPort, 'cluster.perhost.upstream_rq_pending_active')) === 1);
    const third = await request(h.port(), { path: '/perhost/3' });
    assert.equal(third.status, 503);
    assert.equal((await first).status, 200);
    assert.equal((await waiting).status, 200);
    assert.ok(((await stat(h.adminPort, 'cluster.perhost.upstream_cx_overflow')) ?? 0) >= 1);
    assert.equal(await stat(h.adminPort, 'cluster.perhost.upstream_cx_total'), 1);
  });

  it('HTTP/2: max_requests bounds concurrent streams on the shared connection', async () => {
    const rs = await Promise.all([1, 2, 3].map((i) => request(h.port(), { path: `/h2/${i}` })));
    const statuses = rs.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 503]);
    assert.equal(await stat(h.adminPort, 'cluster.h2.upstream_rq_pending_overflow'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.h2.upstream_cx_total'), 1);
    assert.equal(h2InFlight, 0);
  });
});

describe('retry budget', () => {
  let failing: Upstream;
  let h: Running;
  before(async () => {
    failing = await startUpstream('failing', (req, res) => {
      req.resume();
      setTimeout(() => {
        res.writeHead(503);
        res.end();
      }, 100);
    });
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: c, retry_policy: { retry_on: 5xx, num_retries: 1, retry_back_off: { base_interval: 0.2s } } }`,
        clusters: staticCluster(
          'c',
          [failing.port],
          'circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: { value: 10 }, min_retry_concurrency: 2 } }] }',
        ),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await failing.close();
  });

  it('at most max(min_retry_concurrency, budget% of active requests) retries run at once', async () => {
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => request(h.port(), { path: `/${i}` })));
    assert.ok(rs.every((r) => r.status === 503));
    // 6 requests fail together: 10% of them is below the floor of 2, so 2 retry and 4 overflow.
    assert.equal(await stat(h.adminPort, 'cluster.c.upstream_rq_retry'), 2);
    assert.equal(await stat(h.adminPort, 'cluster.c.upstream_rq_retry_overflow'), 4);
  });
});

describe('circuit breaker config', () => {
  it('only max_connections is accepted in per_host_thresholds', async () => {
    await assert.rejects(
      Server.create({
        configYaml: httpBootstrap({
          routes: `- match: { prefix: / }
  route: { cluster: c }`,
          clusters: staticCluster(
            'c',
            [1],
            'circuit_breakers: { per_host_thresholds: [{ max_requests: 3 }] }',
          ),
        }),
      }),
      /per_host_thresholds.*max_requests.*only max_connections/s,
    );
  });
});
