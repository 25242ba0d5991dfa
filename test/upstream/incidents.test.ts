// The three 503 incidents, reproduced over real sockets, each with Envoy's
// status, response flag, counters, and the fixes Envoy offers:
//   503 UF  upstream connect failure (refused, or SYNs never answered)
//   503 UO  upstream overflow (circuit breaker: max_connections / max_pending_requests)
//   503 UC  upstream connection termination (a keep-alive connection the server
//           closes just as a request is written on it)
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tempLog } from '../helpers/access-log-file.js';
import { type Blackhole, startBlackhole } from '../helpers/blackhole.js';
import { closedPort, startTcpEcho } from '../helpers/data-path.js';
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

const FORMAT = '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%';

async function until(cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('incident 1: 503 UF (connect failure)', () => {
  const log = tempLog('herald-uf-');
  let refused: number;
  let hole: Blackhole;
  let good: Upstream;
  let h: Running;
  let tcp: Running;
  before(async () => {
    refused = await closedPort();
    hole = await startBlackhole();
    good = await startUpstream('good');
    const retry = `retry_policy:
      retry_on: connect-failure
      num_retries: 1
      retry_host_predicate:
      - name: envoy.retry_host_predicates.previous_hosts
        typed_config: { "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate }`;
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml(FORMAT),
        routes: `- match: { prefix: /refused }
  route: { cluster: refused }
- match: { prefix: /blackhole }
  route: { cluster: blackhole }
- match: { prefix: /fixed }
  route:
    cluster: half_dead
    ${retry}`,
        clusters: `${staticCluster('refused', [refused])}
${staticCluster('blackhole', [hole.port]).replace('connect_timeout: 1s', 'connect_timeout: 0.2s')}
${staticCluster('half_dead', [refused, good.port])}`,
      }),
    );
    // tcp_proxy with max_connect_attempts: every attempt refused.
    tcp = await startHerald(`
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: refused
          max_connect_attempts: 3
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${log.path}
              log_format: { text_format_source: { inline_string: "tcp %RESPONSE_FLAGS%\\n" } }
  clusters:
${staticCluster('refused', [refused])
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`);
  });
  after(async () => {
    await h.stop();
    await tcp.stop();
    hole.close();
    await good.close();
  });

  it('refused connection: 503 UF at once, upstream_cx_connect_fail', async () => {
    const r = await request(h.port(), { path: '/refused' });
    assert.equal(r.status, 503);
    assert.match(r.body, /reset reason: connection failure/);
    assert.equal(await stat(h.adminPort, 'cluster.refused.upstream_cx_connect_fail'), 1);
    assert.equal(
      await log.find(/^\/refused /),
      '/refused 503 UF upstream_reset_before_response_started{connection_failure}',
    );
  });

  it('SYNs never answered: 503 UF after connect_timeout, upstream_cx_connect_timeout', async () => {
    const t0 = Date.now();
    const r = await request(h.port(), { path: '/blackhole' });
    const took = Date.now() - t0;
    assert.equal(r.status, 503);
    assert.match(r.body, /reset reason: connection timeout/);
    assert.ok(took >= 150, `answered after the connect timeout (${took} ms)`);
    assert.equal(await stat(h.adminPort, 'cluster.blackhole.upstream_cx_connect_timeout'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.blackhole.upstream_cx_connect_fail'), 1);
    assert.match((await log.find(/^\/blackhole /)) ?? '', /^\/blackhole 503 UF /);
  });

  it('the fix: retry_on connect-failure with a second host — every request succeeds', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(h.port(), { path: '/fixed' });
      assert.equal(r.status, 200, `request ${i}: ${r.body}`);
    }
    assert.ok(((await stat(h.adminPort, 'cluster.half_dead.upstream_rq_retry')) ?? 0) >= 1);
    assert.ok(((await stat(h.adminPort, 'cluster.half_dead.upstream_cx_connect_fail')) ?? 0) >= 1);
  });

  it('tcp_proxy: max_connect_attempts exhausted closes the client with UF,URX', async () => {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(tcp.port(), '127.0.0.1');
      s.on('error', reject);
      s.on('close', () => resolve());
      s.resume();
    });
    assert.equal(await stat(tcp.adminPort, 'cluster.refused.upstream_cx_connect_fail'), 3);
    assert.equal(await log.find(/^tcp /), 'tcp UF,URX');
  });
});

describe('incident 2: 503 UO (pending overflow)', () => {
  const log = tempLog('herald-uo-');
  let slow: Upstream;
  let inFlight = 0;
  let h: Running;
  before(async () => {
    slow = await startUpstream('slow', (req, res) => {
      req.resume();
      inFlight++;
      setTimeout(() => {
        inFlight--;
        res.end('slow ok');
      }, 400);
    });
    const limits = 'circuit_breakers: { thresholds: [{ max_connections: 1, max_pending_requests: 1 }] }';
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml(FORMAT),
        routes: `- match: { prefix: /tight }
  route: { cluster: tight }
- match: { prefix: /roomy }
  route: { cluster: roomy }
- match: { prefix: /burst }
  route: { cluster: burst }`,
        clusters: `${staticCluster('tight', [slow.port], limits)}
${staticCluster('roomy', [slow.port])}
${staticCluster('burst', [slow.port], 'circuit_breakers: { thresholds: [{ max_connections: 2, max_pending_requests: 5 }] }')}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await slow.close();
  });

  it('max_connections 1, max_pending_requests 1: the third concurrent request gets 503 UO at once', async () => {
    const first = request(h.port(), { path: '/tight/1' });
    await until(async () => inFlight === 1);
    const second = request(h.port(), { path: '/tight/2' });
    await until(async () => (await stat(h.adminPort, 'cluster.tight.upstream_rq_pending_active')) === 1);
    assert.equal(await stat(h.adminPort, 'cluster.tight.circuit_breakers.default.rq_pending_open'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.tight.circuit_breakers.default.cx_open'), 1);
    const t0 = Date.now();
    const third = await request(h.port(), { path: '/tight/3' });
    const took = Date.now() - t0;
    assert.equal(third.status, 503);
    assert.equal(third.headers['x-envoy-overloaded'], 'true');
    assert.equal(
      third.body,
      'upstream connect error or disconnect/reset before headers. reset reason: overflow',
    );
    assert.ok(took < 300, `overflow answered at once, not after the slow upstream (${took} ms)`);
    assert.equal(inFlight, 1, 'the first request is still at the upstream');
    assert.equal(await stat(h.adminPort, 'cluster.tight.upstream_rq_pending_overflow'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.tight.upstream_cx_overflow'), 1);
    assert.equal(
      await log.find(/^\/tight\/3 /),
      '/tight/3 503 UO upstream_reset_before_response_started{overflow}',
    );
    // The waiting request is served once the connection is free.
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    // The first request also waited, for the connection to be made (as in Envoy).
    assert.equal(await stat(h.adminPort, 'cluster.tight.upstream_rq_pending_total'), 2);
    assert.equal(await stat(h.adminPort, 'cluster.tight.upstream_cx_total'), 1);
  });

  it('the fix: with the default limits (1024/1024) the same three requests all succeed', async () => {
    const rs = await Promise.all([1, 2, 3].map((i) => request(h.port(), { path: `/roomy/${i}` })));
    assert.deepEqual(
      rs.map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal(await stat(h.adminPort, 'cluster.roomy.upstream_rq_pending_overflow'), 0);
  });

  it('a burst of 10x max_pending_requests: every request is answered, 200 or 503 UO, and the queue stays bounded', async () => {
    let maxPending = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxPending = Math.max(
          maxPending,
          (await stat(h.adminPort, 'cluster.burst.upstream_rq_pending_active')) ?? 0,
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const rs = await Promise.all(
      Array.from({ length: 50 }, (_, i) => request(h.port(), { path: `/burst/${i}` })),
    );
    sampling = false;
    await sampler;
    const ok = rs.filter((r) => r.status === 200).length;
    const uo = rs.filter((r) => r.status === 503 && r.headers['x-envoy-overloaded'] === 'true').length;
    assert.equal(ok + uo, 50, 'every request answered with 200 or 503 UO');
    assert.ok(ok >= 2 && uo >= 1, `ok=${ok} uo=${uo}`);
    assert.ok(maxPending <= 5, `pending queue bounded by max_pending_requests (saw ${maxPending})`);
    assert.equal(await stat(h.adminPort, 'cluster.burst.upstream_rq_pending_overflow'), uo);
    assert.ok(((await stat(h.adminPort, 'cluster.burst.upstream_cx_total')) ?? 0) <= 2);
  });

  it('/clusters shows the thresholds in force', async () => {
    const r = await adminGet(h.adminPort, '/clusters');
    assert.match(r.body, /^tight::default_priority::max_connections::1$/m);
    assert.match(r.body, /^tight::default_priority::max_pending_requests::1$/m);
    assert.match(r.body, /^roomy::default_priority::max_requests::1024$/m);
    assert.match(r.body, /^roomy::default_priority::max_retries::3$/m);
  });
});

describe('incident 2 on tcp_proxy: max_connections overflow', () => {
  const log = tempLog('herald-uo-tcp-');
  let echo: Awaited<ReturnType<typeof startTcpEcho>>;
  let h: Running;
  before(async () => {
    echo = await startTcpEcho();
    h = await startHerald(`
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${log.path}
              log_format: { text_format_source: { inline_string: "tcp %RESPONSE_FLAGS%\\n" } }
  clusters:
${staticCluster('echo', [echo.port], 'circuit_breakers: { thresholds: [{ max_connections: 1 }] }')
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}
`);
  });
  after(async () => {
    await h.stop();
    await echo.close();
  });

  it('the second connection is closed at once with UO; the first keeps working', async () => {
    const first = net.connect(h.port(), '127.0.0.1');
    first.on('error', () => {});
    const echoed = new Promise<string>((r) => first.once('data', (d) => r(d.toString())));
    first.write('hello');
    assert.equal(await echoed, 'hello');
    await new Promise<void>((resolve, reject) => {
      const second = net.connect(h.port(), '127.0.0.1');
      second.on('error', reject);
      second.on('close', () => resolve());
      second.resume();
    });
    assert.equal(await log.find(/^tcp /), 'tcp UO');
    assert.equal(await stat(h.adminPort, 'cluster.echo.upstream_cx_overflow'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.echo.circuit_breakers.default.cx_open'), 1);
    first.destroy();
    await until(async () => (await stat(h.adminPort, 'cluster.echo.circuit_breakers.default.cx_open')) === 0);
  });
});

/**
 * An HTTP/1.1 upstream with a keep-alive timeout that closes idle connections on its own timer,
 * without `Connection: close`. The close is made to cross the next request deterministically:
 * once the timer has expired, the server closes the connection when the next request arrives,
 * without answering — exactly what Herald sees when the FIN is in flight as it writes a request.
 */
async function keepAliveCloser(keepAliveMs: number) {
  const stats = { connections: 0, answered: 0, droppedMidRequest: 0 };
  const server = net.createServer((s) => {
    stats.connections++;
    let expired = false;
    let timer: NodeJS.Timeout | undefined;
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        clearTimeout(timer);
        if (expired) {
          stats.droppedMidRequest++;
          s.destroy();
          return;
        }
        stats.answered++;
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        timer = setTimeout(() => {
          expired = true;
        }, keepAliveMs);
      }
    });
    s.on('error', () => {});
    s.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    stats,
    close: () => new Promise<void>((r) => server.close(() => r())),
    server,
  };
}

describe('incident 3: 503 UC (keep-alive race)', () => {
  const log = tempLog('herald-uc-');
  let up: Awaited<ReturnType<typeof keepAliveCloser>>;
  let nodeUp: http.Server;
  let nodePort: number;
  let h: Running;
  const KEEPALIVE = 100;
  before(async () => {
    up = await keepAliveCloser(KEEPALIVE);
    // Node's own server, keep-alive timeout made short: it closes idle connections with a FIN.
    nodeUp = http.createServer((_req, res) => res.end('node ok'));
    nodeUp.keepAliveTimeout = 50;
    await new Promise<void>((r) => nodeUp.listen(0, '127.0.0.1', r));
    nodePort = (nodeUp.address() as net.AddressInfo).port;
    const pool = (idle: string, maxReq = '') => `typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http_protocol_options: {} }
    common_http_protocol_options: { idle_timeout: ${idle}${maxReq} }`;
    h = await startHerald(
      httpBootstrap({
        hcmExtra: log.yaml(FORMAT),
        routes: `- match: { prefix: /plain }
  route: { cluster: plain }
- match: { prefix: /retry-reset }
  route: { cluster: retry, retry_policy: { retry_on: reset, num_retries: 1 } }
- match: { prefix: /retry-before }
  route: { cluster: before, retry_policy: { retry_on: reset-before-request, num_retries: 1 } }
- match: { prefix: /one-shot }
  route: { cluster: oneshot }
- match: { prefix: /idle }
  route: { cluster: idle }
- match: { prefix: /node }
  route: { cluster: node }`,
        clusters: `${staticCluster('plain', [up.port])}
${staticCluster('retry', [up.port])}
${staticCluster('before', [up.port])}
${staticCluster('oneshot', [up.port], pool('3600s', ', max_requests_per_connection: 1'))}
${staticCluster('idle', [up.port], pool('0.05s'))}
${staticCluster('node', [nodePort])}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
    nodeUp.closeAllConnections();
    await new Promise((r) => nodeUp.close(r));
  });

  /** One request, then another after the upstream's keep-alive has run out. */
  async function twoRequests(path: string) {
    const first = await request(h.port(), { path });
    assert.equal(first.status, 200);
    await new Promise((r) => setTimeout(r, KEEPALIVE + 50));
    return request(h.port(), { path });
  }

  it('reproduces it: 503 UC, upstream_cx_destroy_remote_with_active_rq', async () => {
    const r = await twoRequests('/plain');
    assert.equal(r.status, 503);
    assert.equal(
      r.body,
      'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
    );
    assert.equal(await stat(h.adminPort, 'cluster.plain.upstream_cx_destroy_remote_with_active_rq'), 1);
    assert.equal(
      await log.find(/^\/plain 503/),
      '/plain 503 UC upstream_reset_before_response_started{connection_termination}',
    );
  });

  it('fix 1: retry_on reset — the request is retried on a new connection', async () => {
    const r = await twoRequests('/retry-reset');
    assert.equal(r.status, 200);
    assert.equal(await stat(h.adminPort, 'cluster.retry.upstream_cx_destroy_remote_with_active_rq'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.retry.upstream_rq_retry_success'), 1);
  });

  it('reset-before-request does not cover it: the request had been written (as in Envoy)', async () => {
    const r = await twoRequests('/retry-before');
    assert.equal(r.status, 503);
    assert.equal(await stat(h.adminPort, 'cluster.before.upstream_rq_retry'), 0);
  });

  it('fix 2: max_requests_per_connection 1 — no connection is reused', async () => {
    const r = await twoRequests('/one-shot');
    assert.equal(r.status, 200);
    assert.equal(await stat(h.adminPort, 'cluster.oneshot.upstream_cx_total'), 2);
    assert.equal(await stat(h.adminPort, 'cluster.oneshot.upstream_cx_destroy_remote_with_active_rq'), 0);
  });

  it("fix 3: a pool idle_timeout below the upstream's keep-alive — Herald closes first", async () => {
    const r = await twoRequests('/idle');
    assert.equal(r.status, 200);
    assert.equal(await stat(h.adminPort, 'cluster.idle.upstream_cx_idle_timeout'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.idle.upstream_cx_destroy_remote_with_active_rq'), 0);
  });

  it('Herald never picks a connection whose FIN it has read (Node upstream, keepAliveTimeout 50 ms)', async () => {
    for (let i = 0; i < 2; i++) {
      assert.equal((await request(h.port(), { path: '/node' })).status, 200);
      // Node 20 closes an idle connection 1 s after keepAliveTimeout; the FIN arrives while it is idle.
      await new Promise((r) => setTimeout(r, 1200));
    }
    assert.equal(await stat(h.adminPort, 'cluster.node.upstream_cx_total'), 2);
    assert.equal(await stat(h.adminPort, 'cluster.node.upstream_cx_destroy_remote_with_active_rq'), 0);
  });
});
