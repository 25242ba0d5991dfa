// Retries over real sockets: retry_on conditions, num_retries, back-off,
// per-try timeouts, host reselection, body replay and the retry buffer limit,
// the x-envoy-retry-* request headers and Envoy's retry counters and flags.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import { tempLog } from '../helpers/access-log-file.js';
import { closedPort } from '../helpers/data-path.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  type Upstream,
} from '../helpers/harness.js';

/** An upstream that answers the first `failures` requests per path prefix with `failStatus`, then 200. */
async function flaky(failStatus = 503, failHeaders: http.OutgoingHttpHeaders = {}) {
  const counts = new Map<string, number>();
  const bodies: string[] = [];
  const up = await startUpstream('flaky', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString());
      const url = req.url ?? '/';
      const m = /fail=(\d+)/.exec(url);
      const failures = m ? Number(m[1]) : 1;
      const key = url;
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      if (n <= failures) {
        res.writeHead(failStatus, { 'x-attempt': String(n), ...failHeaders });
        res.end('failed');
      } else {
        res.writeHead(200, {
          'x-attempt': String(n),
          'x-seen-attempt-count': String(req.headers['x-envoy-attempt-count'] ?? ''),
        });
        res.end('ok');
      }
    });
  });
  return { up, counts, bodies };
}

describe('retries', () => {
  const log = tempLog('herald-retry-');
  let f503: Awaited<ReturnType<typeof flaky>>;
  let f418: Awaited<ReturnType<typeof flaky>>;
  let grpc: Awaited<ReturnType<typeof flaky>>;
  let hang: Upstream;
  let good: Upstream;
  let refused: number;
  let h: Running;
  before(async () => {
    f503 = await flaky(503);
    f418 = await flaky(418);
    grpc = await flaky(200, { 'grpc-status': '14', 'content-type': 'application/grpc' });
    // Never answers the first request to each path; answers later ones.
    const hungPaths = new Set<string>();
    hang = await startUpstream('hang', (req, res) => {
      req.resume();
      if (!hungPaths.has(req.url ?? '') || req.url?.startsWith('/global')) {
        hungPaths.add(req.url ?? '');
        return;
      }
      res.end('late ok');
    });
    good = await startUpstream('good');
    refused = await closedPort();
    h = await startHerald(
      httpBootstrap({
        // use_remote_address: the test client (loopback) is internal, so x-envoy-* control headers count.
        hcmExtra: `use_remote_address: true
${log.yaml('%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%')}`,
        routes: `- match: { prefix: /5xx }
  route:
    cluster: f503
    retry_policy: { retry_on: 5xx, num_retries: 2, retry_back_off: { base_interval: 0.001s } }
- match: { prefix: /gw }
  route:
    cluster: f503
    retry_policy: { retry_on: gateway-error, num_retries: 1 }
- match: { prefix: /small-buffer }
  route:
    cluster: f503
    retry_policy: { retry_on: 5xx, num_retries: 1 }
- match: { prefix: /codes }
  route:
    cluster: f418
    retry_policy: { retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 1 }
- match: { prefix: /grpc }
  route:
    cluster: grpc
    retry_policy: { retry_on: unavailable, num_retries: 1 }
- match: { prefix: /noretry }
  route: { cluster: f503 }
- match: { prefix: /connect-noretry }
  route: { cluster: mixed }
- match: { prefix: /connect }
  route:
    cluster: mixed
    retry_policy:
      retry_on: connect-failure
      num_retries: 2
      retry_host_predicate:
      - name: envoy.retry_host_predicates.previous_hosts
        typed_config: { "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }
      host_selection_retry_max_attempts: 5
- match: { prefix: /pertry }
  route:
    cluster: hang
    timeout: 5s
    retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 0.2s }
- match: { prefix: /global }
  route:
    cluster: hang
    timeout: 0.3s
    retry_policy: { retry_on: 5xx, num_retries: 3, per_try_timeout: 0.25s }`,
        clusters: `- name: f503
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: f503, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${f503.up.port} } } } }] }] }
- name: f418
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: f418, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${f418.up.port} } } } }] }] }
- name: grpc
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: grpc, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${grpc.up.port} } } } }] }] }
- name: hang
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: hang, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${hang.port} } } } }] }] }
- name: mixed
  type: STATIC
  connect_timeout: 1s
  load_assignment:
    cluster_name: mixed
    endpoints:
    - lb_endpoints:
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${refused} } } }
      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${good.port} } } }`,
      }).replace(
        'routes:',
        // per_request_buffer_limit_bytes and attempt-count headers are virtual-host settings.
        'include_request_attempt_count: true\n              include_attempt_count_in_response: true\n              routes:',
      ),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of [f503.up, f418.up, grpc.up, hang, good]) await u.close();
  });

  it('retry_on 5xx: a 503 is retried and the client sees the 200', async () => {
    const r = await request(h.port(), { path: '/5xx/a?fail=1' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-attempt'], '2');
    assert.equal(r.headers['x-envoy-attempt-count'], '2');
    assert.equal(
      r.headers['x-seen-attempt-count'],
      '2',
      'include_request_attempt_count sends the header upstream',
    );
    assert.equal(await stat(h.adminPort, 'cluster.f503.upstream_rq_retry'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.f503.upstream_rq_retry_success'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.f503.upstream_rq_503'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.f503.upstream_rq_200'), 1);
  });

  it('num_retries exhausted: the last 503 goes to the client, flagged URX', async () => {
    const r = await request(h.port(), { path: '/5xx/b?fail=9' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-attempt'], '3', 'one try and two retries');
    assert.equal(r.headers['x-envoy-attempt-count'], '3');
    assert.equal(await stat(h.adminPort, 'cluster.f503.upstream_rq_retry_limit_exceeded'), 1);
    assert.equal(await log.find(/^\/5xx\/b\?fail=9 /), '/5xx/b?fail=9 503 URX 3');
  });

  it('a request body is replayed on the retry', async () => {
    const before = f503.bodies.length;
    const r = await request(h.port(), { path: '/5xx/body?fail=1', method: 'POST', body: 'payload-123' });
    assert.equal(r.status, 200);
    assert.deepEqual(f503.bodies.slice(before), ['payload-123', 'payload-123']);
  });

  it('gateway-error retries 502-504 only; no policy means no retry', async () => {
    assert.equal((await request(h.port(), { path: '/gw?fail=1' })).status, 200);
    const r = await request(h.port(), { path: '/noretry?fail=1' });
    assert.equal(r.status, 503);
    assert.equal(f503.counts.get('/noretry?fail=1'), 1);
  });

  it('x-envoy-retry-on and x-envoy-max-retries turn retries on per request, and are not forwarded', async () => {
    const r = await request(h.port(), {
      path: '/noretry/hdr?fail=2',
      headers: { 'x-envoy-retry-on': '5xx', 'x-envoy-max-retries': '2' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-attempt'], '3');
    const seen = f503.up.seen.filter((q) => q.url === '/noretry/hdr?fail=2');
    assert.equal(seen.length, 3);
    for (const q of seen) {
      assert.equal(q.headers['x-envoy-retry-on'], undefined);
      assert.equal(q.headers['x-envoy-max-retries'], undefined);
    }
  });

  it('retriable-status-codes and gRPC conditions', async () => {
    assert.equal((await request(h.port(), { path: '/codes?fail=1' })).status, 200);
    const g = await request(h.port(), { path: '/grpc?fail=1' });
    assert.equal(g.status, 200);
    assert.equal(g.headers['grpc-status'], undefined, 'the retried answer has no grpc-status 14');
  });

  it('connect-failure with previous_hosts: every request reaches the live host', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(h.port(), { path: '/connect' });
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.body, 'good');
    }
    assert.ok(((await stat(h.adminPort, 'cluster.mixed.upstream_rq_retry')) ?? 0) >= 1);
    // Without a retry policy, round robin sends some requests to the dead host: 503 UF.
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await request(h.port(), { path: '/connect-noretry' })).status);
    assert.ok(statuses.includes(503) && statuses.includes(200), statuses.join(','));
  });

  it('per_try_timeout: a hung attempt is abandoned and retried', async () => {
    const r = await request(h.port(), { path: '/pertry' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'late ok');
    assert.equal(await stat(h.adminPort, 'cluster.hang.upstream_rq_per_try_timeout'), 1);
  });

  it('the route timeout spans all attempts: 504 UT', async () => {
    const r = await request(h.port(), { path: '/global' });
    assert.equal(r.status, 504);
    assert.equal(r.body, 'upstream request timeout');
    assert.match((await log.find(/^\/global /)) ?? '', /^\/global 504 UT \d$/);
    assert.ok(((await stat(h.adminPort, 'cluster.hang.upstream_rq_timeout')) ?? 0) >= 1);
  });
});

describe('retry limits', () => {
  let f: Awaited<ReturnType<typeof flaky>>;
  let h: Running;
  before(async () => {
    f = await flaky(503);
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route:
    cluster: f
    retry_policy: { retry_on: 5xx, num_retries: 3 }`,
        clusters: `- name: f
  type: STATIC
  connect_timeout: 1s
  circuit_breakers: { thresholds: [{ max_retries: 0 }] }
  load_assignment: { cluster_name: f, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${f.up.port} } } } }] }] }`,
      }).replace('routes:', 'per_request_buffer_limit_bytes: 16\n              routes:'),
    );
  });
  after(async () => {
    await h.stop();
    await f.up.close();
  });

  it('max_retries 0: the retry overflows the circuit breaker', async () => {
    const r = await request(h.port(), { path: '/a?fail=1' });
    assert.equal(r.status, 503);
    assert.equal(await stat(h.adminPort, 'cluster.f.upstream_rq_retry_overflow'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.f.upstream_rq_retry'), 0);
  });

  it('a body over per_request_buffer_limit_bytes cannot be replayed: no retry', async () => {
    const r = await request(h.port(), { path: '/b?fail=1', method: 'POST', body: 'x'.repeat(100) });
    assert.equal(r.status, 503);
    assert.equal(f.counts.get('/b?fail=1'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.f.retry_or_shadow_abandoned'), 1);
  });
});

describe('retry policy config', () => {
  it('an unknown retry_on condition is a config error naming it', async () => {
    await assert.rejects(
      Server.create({
        configYaml: httpBootstrap({
          routes: `- match: { prefix: / }
  route: { cluster: c, retry_policy: { retry_on: "5xx,sometimes" } }`,
          clusters: `- name: c
  type: STATIC
  load_assignment: { cluster_name: c, endpoints: [] }`,
        }),
      }),
      /retry_on.*unknown retry condition 'sometimes'/s,
    );
  });
});
