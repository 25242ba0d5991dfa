// Active health checking over real sockets: HTTP checks take a failing host out of
// rotation and bring it back after healthy_threshold passes, the immediate-fail
// header excludes a host, timeouts set /active_hc_timeout, TCP checks with
// send/receive payloads, gRPC grpc.health.v1 checks against a grpc-js server, the
// configurable panic threshold, and DNS refreshes that keep a host's health state.
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
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

/** Polls `fn` until it returns true, failing after `ms`. */
async function eventually(what: string, fn: () => Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** health_flags of each host of a cluster, by port, from /clusters. */
async function flags(h: Running, cluster: string): Promise<Map<number, string>> {
  const r = await adminGet(h.adminPort, '/clusters');
  const out = new Map<number, string>();
  for (const line of r.body.split('\n')) {
    const m = line.match(/^([^:]+)::127\.0\.0\.1:(\d+)::health_flags::(.*)$/);
    if (m && m[1] === cluster) out.set(Number(m[2]), m[3]!);
  }
  return out;
}

/** Upstream names of n sequential requests. */
async function servedBy(port: number, path: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(port, { path });
    out.push(r.status === 200 ? String(r.headers['x-upstream']) : `status ${r.status}`);
  }
  return out;
}

/** An upstream whose health path answers `state.status` (with `state.headers`). */
function hcUpstream(
  name: string,
  state: { status: number; headers?: Record<string, string>; hang?: boolean },
): Promise<Upstream> {
  return startUpstream(name, (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.url === '/healthz') {
      if (state.hang) return; // never answers
      res.writeHead(state.status, { ...(state.headers ?? {}), 'x-upstream': name });
      res.end();
      return;
    }
    res.writeHead(200, { 'x-upstream': name });
    res.end(name);
  });
}

const HTTP_HC = (extra = '') => `health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 2
  healthy_threshold: 2
  http_health_check:
    path: /healthz
${extra}`;

describe('HTTP health checks', () => {
  const aState = { status: 503 };
  const bState = { status: 200 };
  const ex1 = { status: 503, headers: { 'x-envoy-immediate-health-check-fail': 'true' } };
  const ex2 = { status: 503, headers: { 'x-envoy-immediate-health-check-fail': 'true' } };
  const hang = { status: 200, hang: true };
  let a: Upstream;
  let b: Upstream;
  let e1: Upstream;
  let e2: Upstream;
  let e3: Upstream;
  let slow: Upstream;
  let h: Running;

  before(async () => {
    a = await hcUpstream('a', aState);
    b = await hcUpstream('b', bState);
    e1 = await hcUpstream('e1', ex1);
    e2 = await hcUpstream('e2', ex2);
    e3 = await hcUpstream('e3', { status: 200 });
    slow = await hcUpstream('slow', hang);
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /excluded }
  route: { cluster: excluded }
- match: { prefix: / }
  route: { cluster: web }`,
        clusters: [
          staticCluster(
            'web',
            [a.port, b.port],
            HTTP_HC(`    request_headers_to_add:
    - header: { key: x-hc-from, value: herald }`),
          ),
          staticCluster('excluded', [e1.port, e2.port, e3.port], HTTP_HC()),
          staticCluster(
            'slow',
            [slow.port],
            `health_checks:
- timeout: 0.2s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  http_health_check: { path: /healthz }`,
          ),
        ].join('\n'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of [a, b, e1, e2, e3, slow]) await u.close();
  });

  it('a host failing its check is out of rotation once Herald is up, with Envoy-named stats', async () => {
    // Startup waits for each host's first check, so the verdict is already in.
    const f = await flags(h, 'web');
    assert.equal(f.get(a.port), '/failed_active_hc');
    assert.equal(f.get(b.port), 'healthy');
    assert.deepEqual(new Set(await servedBy(h.port(), '/', 10)), new Set(['b']));
    assert.equal(await stat(h.adminPort, 'cluster.web.health_check.healthy'), 1);
    assert.ok((await stat(h.adminPort, 'cluster.web.health_check.failure'))! >= 1);
    assert.ok((await stat(h.adminPort, 'cluster.web.health_check.success'))! >= 1);
    assert.ok((await stat(h.adminPort, 'cluster.web.health_check.attempt'))! >= 2);
    assert.equal(await stat(h.adminPort, 'cluster.web.membership_healthy'), 1);
  });

  it('sends Envoy/HC requests to the path, with the cluster name as host and the added headers', () => {
    const checks = b.seen.filter((r) => r.url === '/healthz');
    assert.ok(checks.length >= 1);
    const r = checks[0]!;
    assert.equal(r.method, 'GET');
    assert.equal(r.headers['user-agent'], 'Envoy/HC');
    assert.equal(r.headers.host, 'web');
    assert.equal(r.headers['x-hc-from'], 'herald');
  });

  it('comes back after healthy_threshold passes, and fails again at the first bad answer', async () => {
    aState.status = 200;
    await eventually('a healthy', async () => (await flags(h, 'web')).get(a.port) === 'healthy');
    const seen = await servedBy(h.port(), '/', 10);
    assert.deepEqual(new Set(seen), new Set(['a', 'b']));
    assert.equal(await stat(h.adminPort, 'cluster.web.health_check.healthy'), 2);
    // A non-2xx answer is not a network failure: it fails the host without waiting for the threshold.
    const failuresBefore = (await stat(h.adminPort, 'cluster.web.health_check.failure'))!;
    aState.status = 500;
    await eventually('a failed', async () => (await flags(h, 'web')).get(a.port) === '/failed_active_hc');
    const failuresAfter = (await stat(h.adminPort, 'cluster.web.health_check.failure'))!;
    assert.ok(failuresAfter >= failuresBefore + 1);
    assert.deepEqual(new Set(await servedBy(h.port(), '/', 6)), new Set(['b']));
  });

  it('x-envoy-immediate-health-check-fail excludes the host: no panic though 2 of 3 fail', async () => {
    const f = await flags(h, 'excluded');
    assert.equal(f.get(e1.port), '/failed_active_hc/excluded_via_immediate_hc_fail');
    assert.equal(f.get(e2.port), '/failed_active_hc/excluded_via_immediate_hc_fail');
    assert.equal(f.get(e3.port), 'healthy');
    // Excluded hosts leave the panic denominator: 1 healthy of 1 eligible.
    assert.deepEqual(new Set(await servedBy(h.port(), '/excluded', 9)), new Set(['e3']));
    assert.equal(await stat(h.adminPort, 'cluster.excluded.lb_healthy_panic'), 0);
    // Passing again clears the exclusion too.
    ex1.status = 200;
    await eventually('e1 healthy', async () => (await flags(h, 'excluded')).get(e1.port) === 'healthy');
  });

  it('a check that times out is a network failure and sets /active_hc_timeout', async () => {
    const f = await flags(h, 'slow');
    assert.equal(f.get(slow.port), '/failed_active_hc/active_hc_timeout');
    assert.ok((await stat(h.adminPort, 'cluster.slow.health_check.network_failure'))! >= 1);
    assert.equal(await stat(h.adminPort, 'cluster.slow.health_check.healthy'), 0);
  });
});

describe('panic threshold (common_lb_config.healthy_panic_threshold)', () => {
  const ups: Upstream[] = [];
  let h: Running;
  before(async () => {
    ups.push(await hcUpstream('ok', { status: 200 }));
    ups.push(await hcUpstream('bad1', { status: 503 }));
    ups.push(await hcUpstream('bad2', { status: 503 }));
    const ports = ups.map((u) => u.port);
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /default }
  route: { cluster: default_panic }
- match: { prefix: /nopanic }
  route: { cluster: no_panic }
- match: { path: /allbad }
  route: { cluster: all_bad }
- match: { path: /allbadpanic }
  route: { cluster: all_bad_panic }`,
        clusters: [
          staticCluster('default_panic', ports, HTTP_HC()),
          staticCluster(
            'no_panic',
            ports,
            `common_lb_config: { healthy_panic_threshold: { value: 0 } }\n${HTTP_HC()}`,
          ),
          staticCluster(
            'all_bad',
            [ports[1]!, ports[2]!],
            `common_lb_config: { healthy_panic_threshold: { value: 0 } }\n${HTTP_HC()}`,
          ),
          staticCluster('all_bad_panic', [ports[1]!, ports[2]!], HTTP_HC()),
        ].join('\n'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of ups) await u.close();
  });

  it('1 healthy of 3 is under the default 50%: traffic goes to every host and lb_healthy_panic counts', async () => {
    const seen = await servedBy(h.port(), '/default', 12);
    assert.deepEqual(new Set(seen), new Set(['ok', 'bad1', 'bad2']));
    assert.equal(await stat(h.adminPort, 'cluster.default_panic.lb_healthy_panic'), 12);
  });

  it('a threshold of 0 disables panic mode: only the healthy host is used', async () => {
    assert.deepEqual(new Set(await servedBy(h.port(), '/nopanic', 9)), new Set(['ok']));
    assert.equal(await stat(h.adminPort, 'cluster.no_panic.lb_healthy_panic'), 0);
  });

  it('with every host failing: 503 without panic mode, all hosts in panic mode', async () => {
    const r = await request(h.port(), { path: '/allbad' });
    assert.equal(r.status, 503);
    assert.equal(r.body, 'no healthy upstream');
    const seen = await servedBy(h.port(), '/allbadpanic', 6);
    assert.deepEqual(new Set(seen), new Set(['bad1', 'bad2']));
    assert.equal(await stat(h.adminPort, 'cluster.all_bad_panic.lb_healthy_panic'), 6);
  });
});

describe('TCP health checks', () => {
  const servers: net.Server[] = [];
  let pong = 0;
  let nope = 0;
  let closed = 0;
  let h: Running;

  async function tcpServer(reply: (data: Buffer) => Buffer | undefined): Promise<number> {
    const s = net.createServer((sock) => {
      sock.on('data', (d) => {
        const out = reply(d);
        if (out) sock.write(out);
      });
      sock.on('error', () => {});
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as net.AddressInfo).port;
  }

  before(async () => {
    pong = await tcpServer((d) => (d.toString() === 'PING' ? Buffer.from('xxPONGyy') : undefined));
    nope = await tcpServer(() => Buffer.from('NOPE'));
    // A port nobody listens on.
    const tmp = net.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    closed = (tmp.address() as net.AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    const hc = (payloads: string) => `health_checks:
- timeout: 0.3s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  tcp_health_check: ${payloads}`;
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: payload }`,
        clusters: [
          // "PING" out, "PONG" expected back (hex text, as Envoy's Payload.text).
          staticCluster(
            'payload',
            [pong, nope],
            hc('{ send: { text: "50494e47" }, receive: [{ text: "504f4e47" }] }'),
          ),
          staticCluster('connect', [nope, closed], hc('{}')),
        ].join('\n'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const s of servers) {
      s.close();
    }
  });

  it('send/receive payloads: the host answering PONG is healthy, the other one times out', async () => {
    await eventually('pong healthy, nope timed out', async () => {
      const f = await flags(h, 'payload');
      return f.get(pong) === 'healthy' && f.get(nope) === '/failed_active_hc/active_hc_timeout';
    });
    assert.ok((await stat(h.adminPort, 'cluster.payload.health_check.network_failure'))! >= 1);
    assert.equal(await stat(h.adminPort, 'cluster.payload.health_check.healthy'), 1);
  });

  it('connect-only: a listening port passes, a closed one fails', async () => {
    const f = await flags(h, 'connect');
    assert.equal(f.get(nope), 'healthy');
    assert.equal(f.get(closed), '/failed_active_hc');
  });
});

describe('gRPC health checks', () => {
  const Req = new protobuf.Type('HealthCheckRequest').add(new protobuf.Field('service', 1, 'string'));
  const Res = new protobuf.Type('HealthCheckResponse').add(new protobuf.Field('status', 1, 'int32'));
  const SERVING = 1;
  const NOT_SERVING = 2;
  const status = new Map<string, number>([
    ['svc.up', SERVING],
    ['svc.down', NOT_SERVING],
  ]);
  const asked: Array<{ service: string; authority: string | undefined; ua: string | undefined }> = [];
  let server: grpc.Server;
  let port = 0;
  let h: Running;

  before(async () => {
    server = new grpc.Server();
    const def: grpc.ServiceDefinition = {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: { service: string }) => Buffer.from(Req.encode(v).finish()),
        requestDeserialize: (b: Buffer) => Req.decode(b) as unknown as { service: string },
        responseSerialize: (v: { status: number }) => Buffer.from(Res.encode(v).finish()),
        responseDeserialize: (b: Buffer) => Res.decode(b),
      },
    };
    server.addService(def, {
      Check: (
        call: grpc.ServerUnaryCall<{ service: string }, { status: number }>,
        cb: grpc.sendUnaryData<{ status: number }>,
      ) => {
        const service = call.request.service ?? '';
        asked.push({
          service,
          authority: call.getHost(),
          ua: String(call.metadata.get('user-agent')[0] ?? ''),
        });
        const s = status.get(service);
        if (s === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        else cb(null, { status: s });
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const hc = (grpcCheck: string) => `health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 2
  healthy_threshold: 2
  grpc_health_check: ${grpcCheck}`;
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: [
          staticCluster('up', [port], hc('{ service_name: svc.up, authority: health.example }')),
          staticCluster('down', [port], hc('{ service_name: svc.down }')),
          staticCluster('unknown', [port], hc('{ service_name: svc.nobody }')),
        ].join('\n'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    server.forceShutdown();
  });

  it('SERVING is healthy; NOT_SERVING and an error status are not', async () => {
    assert.equal((await flags(h, 'up')).get(port), 'healthy');
    assert.equal((await flags(h, 'down')).get(port), '/failed_active_hc');
    assert.equal((await flags(h, 'unknown')).get(port), '/failed_active_hc');
    const up = asked.find((a) => a.service === 'svc.up');
    assert.ok(up, 'the service name reached the server');
    assert.match(up.ua ?? '', /^Envoy\/HC/);
    assert.equal(up.authority, 'health.example');
    // Without an authority: the cluster name, as Envoy.
    assert.equal(asked.find((a) => a.service === 'svc.down')?.authority, 'down');
  });

  it('a service that starts serving comes back after healthy_threshold checks', async () => {
    status.set('svc.down', SERVING);
    await eventually('down healthy', async () => (await flags(h, 'down')).get(port) === 'healthy');
    status.set('svc.down', NOT_SERVING);
    await eventually('down failed', async () => (await flags(h, 'down')).get(port) === '/failed_active_hc');
  });
});

describe('health checks and DNS refresh', () => {
  let u: Upstream;
  let h: Running;
  before(async () => {
    u = await hcUpstream('dns', { status: 200 });
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: dns }`,
        clusters: `- name: dns
  type: STRICT_DNS
  connect_timeout: 1s
  dns_lookup_family: V4_ONLY
  dns_refresh_rate: 0.05s
  health_checks:
  - timeout: 1s
    interval: 30s
    unhealthy_threshold: 1
    healthy_threshold: 1
    http_health_check: { path: /healthz }
  load_assignment:
    cluster_name: dns
    endpoints:
    - lb_endpoints:
      - endpoint: { address: { socket_address: { address: localhost, port_value: ${u.port} } } }`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await u.close();
  });

  it('a host that is resolved again keeps its health and its checker', async () => {
    await eventually(
      'several DNS refreshes',
      async () => ((await stat(h.adminPort, 'cluster.dns.update_success')) ?? 0) >= 5,
    );
    assert.equal((await flags(h, 'dns')).get(u.port), 'healthy');
    // One session for the host, whose next check is 30 s away: one attempt in all.
    assert.equal(await stat(h.adminPort, 'cluster.dns.health_check.attempt'), 1);
    assert.equal((await request(h.port(), { path: '/' })).status, 200);
  });
});

describe('HTTP/2 health checks (codec_client_type: HTTP2)', () => {
  const servers: http2.Http2Server[] = [];
  const ports: number[] = [];
  const seen: http2.IncomingHttpHeaders[] = [];
  let h: Running;
  before(async () => {
    for (const status of [200, 503]) {
      const s = http2.createServer((req, res) => {
        seen.push(req.headers);
        res.writeHead(req.url === '/healthz' ? status : 200);
        res.end();
      });
      servers.push(s);
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      ports.push((s.address() as net.AddressInfo).port);
    }
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: h2 }`,
        clusters: staticCluster(
          'h2',
          ports,
          HTTP_HC(`    host: h2.example
    codec_client_type: HTTP2`),
        ),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const s of servers) await new Promise((r) => s.close(r));
  });

  it('checks over HTTP/2 with the configured host as :authority', async () => {
    const f = await flags(h, 'h2');
    assert.equal(f.get(ports[0]!), 'healthy');
    assert.equal(f.get(ports[1]!), '/failed_active_hc');
    const r = seen.find((x) => x[':path'] === '/healthz')!;
    assert.equal(r[':authority'], 'h2.example');
    assert.equal(r['user-agent'], 'Envoy/HC');
    assert.equal(r[':method'], 'GET');
  });
});

describe('x-envoy-immediate-health-check-fail on routed traffic', () => {
  let p1: Upstream;
  let p2: Upstream;
  let h: Running;
  before(async () => {
    // p1 passes its health checks but answers traffic saying it is failing them.
    p1 = await startUpstream('p1', (req, res) => {
      if (req.url === '/healthz') return res.end();
      res.writeHead(503, { 'x-envoy-immediate-health-check-fail': 'true', 'x-upstream': 'p1' });
      res.end('draining');
    });
    p2 = await hcUpstream('p2', { status: 200 });
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: passive }`,
        clusters: staticCluster(
          'passive',
          [p1.port, p2.port],
          `health_checks:
- timeout: 1s
  interval: 30s
  no_traffic_interval: 30s
  unhealthy_threshold: 2
  healthy_threshold: 2
  http_health_check: { path: /healthz }`,
        ),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await p1.close();
    await p2.close();
  });

  it('a response carrying the header takes its host out at once', async () => {
    assert.equal((await flags(h, 'passive')).get(p1.port), 'healthy');
    const seen = await servedBy(h.port(), '/', 2);
    assert.ok(seen.includes('status 503'), seen.join(','));
    assert.equal(
      (await flags(h, 'passive')).get(p1.port),
      '/failed_active_hc/excluded_via_immediate_hc_fail',
    );
    assert.deepEqual(new Set(await servedBy(h.port(), '/', 6)), new Set(['p2']));
  });
});
