// Herald with worker processes (--concurrency 2): traffic through both
// workers, per-worker listener stats that add up, exact balance, host health
// reaching every worker, circuit breakers shared across workers, a killed or
// hung worker replaced while the listener keeps accepting.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import {
  adminGet,
  httpBootstrap,
  request,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

async function startWorkers(yaml: string, concurrency = 2): Promise<Server> {
  const s = await Server.create({ configYaml: yaml, concurrency });
  await s.start();
  return s;
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A keep-alive connection that sends one request and stays open. */
function holdConnection(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /hold HTTP/1.1\r\nhost: a\r\n\r\n'));
    s.once('data', () => resolve(s));
    s.on('error', reject);
  });
}

describe('workers (kernel balance)', () => {
  let up: Upstream;
  let h: Server;
  before(async () => {
    up = await startUpstream('up');
    h = await startWorkers(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [up.port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('two workers serve traffic and their listener stats add up to the totals', async () => {
    const port = h.listenerPort('main');
    const admin = h.admin!.boundPort;
    assert.equal(h.workers?.size, 2);
    for (let i = 0; i < 30; i++) assert.equal((await request(port, { path: `/${i}` })).status, 200);
    const prefix = `listener.127.0.0.1_${port}`;
    const total = await stat(admin, `${prefix}.downstream_cx_total`);
    const w0 = (await stat(admin, `${prefix}.worker_0.downstream_cx_total`)) ?? 0;
    const w1 = (await stat(admin, `${prefix}.worker_1.downstream_cx_total`)) ?? 0;
    assert.equal(total, 30);
    assert.equal(w0 + w1, 30);
    assert.equal(await stat(admin, 'cluster.up.upstream_rq_200'), 30);
    assert.equal(await stat(admin, 'http.test.downstream_rq_total'), 30);
    assert.equal(await stat(admin, 'server.concurrency'), 2);
  });

  it('a killed worker is replaced and the listener never stops accepting', async () => {
    const port = h.listenerPort('main');
    const before = h.workers!.pids();
    process.kill(before[0]!, 'SIGKILL');
    // Requests keep succeeding while the worker is replaced (the other one accepts meanwhile).
    for (let i = 0; i < 20; i++) assert.equal((await request(port, { path: `/k${i}` })).status, 200);
    await until('a new worker', () => {
      const now = h.workers!.pids();
      return now[0] !== before[0] && now[0] !== 0;
    });
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 10; i++) assert.equal((await request(port, { path: `/n${i}` })).status, 200);
    assert.equal(h.workers!.pids()[1], before[1], 'the other worker was left alone');
  });
});

describe('workers (exact balance)', () => {
  let up: Upstream;
  let h: Server;
  before(async () => {
    up = await startUpstream('up');
    h = await startWorkers(
      httpBootstrap({
        listenerExtra: '    connection_balance_config: { exact_balance: {} }',
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [up.port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('spreads 64 long-lived connections within one of even', async () => {
    const port = h.listenerPort('main');
    const admin = h.admin!.boundPort;
    const conns: net.Socket[] = [];
    for (let i = 0; i < 64; i++) conns.push(await holdConnection(port));
    const prefix = `listener.127.0.0.1_${port}`;
    const w0 = (await stat(admin, `${prefix}.worker_0.downstream_cx_active`)) ?? 0;
    const w1 = (await stat(admin, `${prefix}.worker_1.downstream_cx_active`)) ?? 0;
    assert.equal(w0 + w1, 64);
    assert.ok(Math.abs(w0 - w1) <= 2, `worker_0=${w0} worker_1=${w1}`);
    for (const c of conns) c.destroy();
    await until(
      'connections closed',
      async () => (await stat(admin, `${prefix}.downstream_cx_active`)) === 0,
    );
  });
});

describe('workers: host health and circuit breakers', () => {
  let a: Upstream;
  let healthy = true;
  let slow: http.Server;
  let slowPort: number;
  let openNow = 0;
  let openPeak = 0;
  let h: Server;
  before(async () => {
    a = await startUpstream('a', (req, res) => {
      if (req.url === '/healthz') res.writeHead(healthy ? 200 : 503);
      res.end('a');
    });
    slow = http.createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end('slow'), 300);
    });
    slow.on('connection', (s) => {
      openNow++;
      openPeak = Math.max(openPeak, openNow);
      s.on('close', () => openNow--);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    slowPort = (slow.address() as net.AddressInfo).port;
    h = await startWorkers(
      httpBootstrap({
        listenerExtra: '    connection_balance_config: { exact_balance: {} }',
        routes: `- match: { prefix: /slow }
  route: { cluster: slow }
- match: { prefix: / }
  route: { cluster: checked }`,
        clusters: `${staticCluster(
          'checked',
          [a.port],
          `common_lb_config: { healthy_panic_threshold: { value: 0 } }
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  http_health_check: { path: /healthz }`,
        )}
${staticCluster('slow', [slowPort], 'circuit_breakers: { thresholds: [{ max_connections: 3, max_pending_requests: 100 }] }')}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await a.close();
    slow.closeAllConnections();
    await new Promise((r) => slow.close(r));
  });

  it("the main process's health-check verdict reaches every worker", async () => {
    const port = h.listenerPort('main');
    // Two connections at once: exact balance puts one on each worker.
    const both = async () => Promise.all([request(port, { path: '/x' }), request(port, { path: '/y' })]);
    assert.deepEqual(
      (await both()).map((r) => r.status),
      [200, 200],
    );
    healthy = false;
    await until('host failed', async () => {
      const r = await adminGet(h.admin!.boundPort, '/clusters');
      return r.body.includes('health_flags::/failed_active_hc');
    });
    await new Promise((r) => setTimeout(r, 100));
    for (const r of await both()) assert.equal(r.status, 503, 'no healthy upstream in either worker');
    healthy = true;
    await until('host healthy', async () => {
      const r = await adminGet(h.admin!.boundPort, '/clusters');
      return /checked::127\.0\.0\.1:\d+::health_flags::healthy/.test(r.body);
    });
    await new Promise((r) => setTimeout(r, 100));
    for (const r of await both()) assert.equal(r.status, 200);
  });

  it('max_connections is one limit for the whole proxy, not per worker', async () => {
    const port = h.listenerPort('main');
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => request(port, { path: `/slow/${i}` })));
    assert.ok(rs.every((r) => r.status === 200));
    // Per-worker limits would allow 6 (3 each). Envoy lets a pool with no connection open one
    // even at the limit, so the bound is the limit plus one per other worker.
    assert.ok(openPeak <= 4, `peak upstream connections ${openPeak}`);
    assert.ok(((await stat(h.admin!.boundPort, 'cluster.slow.upstream_cx_overflow')) ?? 0) >= 1);
    assert.ok(((await stat(h.admin!.boundPort, 'cluster.slow.upstream_rq_pending_total')) ?? 0) >= 9);
  });
});

describe('workers: watchdog', () => {
  let up: Upstream;
  let h: Server;
  before(async () => {
    up = await startUpstream('up');
    h = await startWorkers(
      `${httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [up.port]),
      })}
watchdogs:
  worker_watchdog: { miss_timeout: 0.1s, megamiss_timeout: 0.2s, kill_timeout: 0.6s }
`,
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('a worker whose event loop stops is counted as missed, then killed and replaced', async () => {
    const admin = h.admin!.boundPort;
    const before = h.workers!.pids();
    process.kill(before[1]!, 'SIGSTOP'); // its loop stops turning
    await until('worker replaced', () => h.workers!.pids()[1] !== before[1] && h.workers!.pids()[1] !== 0);
    assert.ok(((await stat(admin, 'server.watchdog_miss')) ?? 0) >= 1);
    assert.ok(((await stat(admin, 'server.watchdog_mega_miss')) ?? 0) >= 1);
    assert.ok(((await stat(admin, 'workers.watchdog_miss')) ?? 0) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    const port = h.listenerPort('main');
    for (let i = 0; i < 10; i++) assert.equal((await request(port, { path: `/${i}` })).status, 200);
  });
});

describe('workers: one access log file', () => {
  let up: Upstream;
  let h: Server;
  let file: string;
  before(async () => {
    up = await startUpstream('up');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-wlog-')), 'access.log');
    h = await startWorkers(
      httpBootstrap({
        hcmExtra: `access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${file}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)% %RESPONSE_CODE% ${'x'.repeat(200)}\\n" } }`,
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [up.port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('lines written by both workers never interleave', async () => {
    const fs = await import('node:fs');
    const port = h.listenerPort('main');
    await Promise.all(
      Array.from({ length: 8 }, async (_, k) => {
        for (let i = 0; i < 25; i++) await request(port, { path: `/p${k}-${i}` });
      }),
    );
    await until('200 lines', () => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length >= 200);
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    assert.equal(lines.length, 200);
    for (const l of lines) assert.match(l, /^\/p\d-\d+ 200 x{200}$/);
    const w0 =
      (await stat(h.admin!.boundPort, `listener.127.0.0.1_${port}.worker_0.downstream_cx_total`)) ?? 0;
    const w1 =
      (await stat(h.admin!.boundPort, `listener.127.0.0.1_${port}.worker_1.downstream_cx_total`)) ?? 0;
    assert.ok(w0 > 0 && w1 > 0, `both workers wrote (${w0}/${w1} connections)`);
  });
});

describe('workers: DNS is resolved by the main process', () => {
  let dnsServer: Awaited<ReturnType<typeof import('../helpers/dns-server.js').startDnsServer>>;
  let a: http.Server;
  let b: http.Server;
  let h: Server;
  let restore: string[];
  before(async () => {
    const dns = await import('node:dns');
    const { startDnsServer } = await import('../helpers/dns-server.js');
    dnsServer = await startDnsServer();
    restore = dns.getServers();
    // Only this (main) process asks the test DNS server; a worker resolving on its own would fail.
    dns.setServers([`127.0.0.1:${dnsServer.port}`]);
    a = http.createServer((_q, r) => r.end('a'));
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    const port = (a.address() as net.AddressInfo).port;
    b = http.createServer((_q, r) => r.end('b'));
    await new Promise<void>((r) => b.listen(port, '127.0.0.2', r));
    dnsServer.records.set('svc.herald.test', ['127.0.0.1', 1]);
    h = await startWorkers(
      httpBootstrap({
        listenerExtra: '    connection_balance_config: { exact_balance: {} }',
        routes: `- match: { prefix: / }
  route: { cluster: svc }`,
        clusters: `- name: svc
  type: STRICT_DNS
  connect_timeout: 1s
  respect_dns_ttl: true
  dns_lookup_family: V4_ONLY
  load_assignment:
    cluster_name: svc
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: svc.herald.test, port_value: ${port} } } } }] }]`,
      }),
    );
  });
  after(async () => {
    const dns = await import('node:dns');
    await h.stop();
    dns.setServers(restore);
    await dnsServer.close();
    a.close();
    b.close();
  });

  it("both workers route to the main process's DNS result, and follow its changes", async () => {
    const port = h.listenerPort('main');
    const both = async () =>
      (await Promise.all([request(port, { path: '/1' }), request(port, { path: '/2' })])).map((r) => r.body);
    assert.deepEqual(await both(), ['a', 'a']);
    dnsServer.records.set('svc.herald.test', ['127.0.0.2', 1]);
    await until('both workers on b', async () => (await both()).every((x) => x === 'b'));
  });
});

describe('workers: outlier detection in the main process', () => {
  let bad: Upstream;
  let good: Upstream;
  let h: Server;
  before(async () => {
    bad = await startUpstream('bad', (_q, r) => {
      r.writeHead(500, { 'x-upstream': 'bad' });
      r.end('bad');
    });
    good = await startUpstream('good');
    h = await startWorkers(
      httpBootstrap({
        listenerExtra: '    connection_balance_config: { exact_balance: {} }',
        routes: `- match: { prefix: / }
  route: { cluster: od }`,
        clusters: staticCluster(
          'od',
          [bad.port, good.port],
          `outlier_detection: { consecutive_5xx: 3, interval: 0.1s, base_ejection_time: 30s, max_ejection_percent: 50 }`,
        ),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await bad.close();
    await good.close();
  });

  it('results from both workers feed one detector; its ejection reaches every worker', async () => {
    const port = h.listenerPort('main');
    const admin = h.admin!.boundPort;
    await until('ejected', async () => {
      await Promise.all([request(port, { path: '/a' }), request(port, { path: '/b' })]);
      return (await adminGet(admin, '/clusters')).body.includes('::health_flags::/failed_outlier_check');
    });
    assert.equal(await stat(admin, 'cluster.od.outlier_detection.ejections_enforced_consecutive_5xx'), 1);
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 4; i++) {
      const rs = await Promise.all([request(port, { path: '/x' }), request(port, { path: '/y' })]);
      assert.deepEqual(
        rs.map((r) => r.status),
        [200, 200],
        'both workers avoid the ejected host',
      );
    }
  });
});
