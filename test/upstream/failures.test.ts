// Upstream failures over real sockets: refused connections, empty
// clusters, upstreams that hang up before or after the response headers,
// stale pooled connections, and the stats Envoy charges for each.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { closedPort, cluster, httpConfig, sleep } from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

const RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

describe('upstream failures', () => {
  let hangup: http.Server;
  let midBody: http.Server;
  let shortKeepAlive: http.Server;
  let slow: http.Server;
  const timers = new Set<NodeJS.Timeout>();
  let h: Running;
  before(async () => {
    // Reads the request, then drops the connection without a response.
    hangup = http.createServer((req) => {
      req.resume();
      req.on('end', () => req.socket.destroy());
    });
    // Sends headers and part of the body, then drops the connection.
    midBody = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      const t = setTimeout(() => {
        timers.delete(t);
        res.socket?.destroy();
      }, 50);
      timers.add(t);
    });
    // Closes idle keep-alive connections after 30 ms.
    shortKeepAlive = http.createServer((req, res) => {
      req.resume();
      res.end('fresh');
    });
    shortKeepAlive.keepAliveTimeout = 30;
    slow = http.createServer((req, res) => {
      req.resume();
      const t = setTimeout(() => {
        timers.delete(t);
        res.end('late');
      }, 2000);
      timers.add(t);
    });
    const ports = {
      refused: await closedPort(),
      hangup: await listen(hangup),
      midBody: await listen(midBody),
      ka: await listen(shortKeepAlive),
      slow: await listen(slow),
    };
    h = await startHerald(
      httpConfig({
        hcmExtra: { stat_prefix: 'fail' },
        routes: [
          { match: { prefix: '/refused' }, route: { cluster: 'refused' } },
          { match: { prefix: '/empty' }, route: { cluster: 'empty' } },
          { match: { prefix: '/hangup' }, route: { cluster: 'hangup' } },
          { match: { prefix: '/midbody' }, route: { cluster: 'midbody' } },
          { match: { prefix: '/ka' }, route: { cluster: 'ka' } },
          { match: { prefix: '/slow' }, route: { cluster: 'slow', timeout: '0.1s' } },
        ],
        clusters: [
          cluster('refused', [ports.refused]),
          cluster('empty', []),
          cluster('hangup', [ports.hangup]),
          cluster('midbody', [ports.midBody]),
          cluster('ka', [ports.ka]),
          cluster('slow', [ports.slow]),
        ],
      }),
    );
  });
  after(async () => {
    for (const t of timers) clearTimeout(t);
    await h.stop();
    await close(hangup);
    await close(midBody);
    await close(shortKeepAlive);
    await close(slow);
  });

  it('connection refused: 503 "connection failure" and upstream_cx_connect_fail', async () => {
    const r = await request(h.port(), { path: '/refused' });
    assert.equal(r.status, 503);
    assert.equal(r.body, `${RESET}connection failure, transport failure reason: delayed connect error: 111`);
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['content-length'], String(r.body.length));
    assert.equal(await stat(h.adminPort, 'cluster.refused.upstream_cx_connect_fail'), 1);
    await request(h.port(), { path: '/refused' });
    assert.equal(await stat(h.adminPort, 'cluster.refused.upstream_cx_connect_fail'), 2);
    assert.equal(await stat(h.adminPort, 'http.fail.downstream_rq_5xx'), 2);
  });

  it('a connection failure is charged to the cluster as upstream_rq_503', async () => {
    const before = (await stat(h.adminPort, 'cluster.refused.upstream_rq_503')) ?? 0;
    await request(h.port(), { path: '/refused' });
    assert.equal(await stat(h.adminPort, 'cluster.refused.upstream_rq_503'), before + 1);
  });

  it('a cluster with no endpoints: 503 "no healthy upstream" and upstream_cx_none_healthy', async () => {
    const r = await request(h.port(), { path: '/empty' });
    assert.equal(r.status, 503);
    assert.equal(r.body, 'no healthy upstream');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(await stat(h.adminPort, 'cluster.empty.upstream_cx_none_healthy'), 1);
  });

  it('the upstream closes before any response: 503 "connection termination"', async () => {
    const r = await request(h.port(), { path: '/hangup', method: 'POST', body: 'some body' });
    assert.equal(r.status, 503);
    assert.equal(r.body, `${RESET}connection termination`);
    assert.equal(await stat(h.adminPort, 'cluster.hangup.upstream_cx_destroy_remote_with_active_rq'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.hangup.upstream_cx_connect_fail'), 0);
  });

  it('the upstream closes mid-body: the client sees the 200 and then a reset, not a clean end or a hang', async () => {
    const outcome = await new Promise<{ status: number; got: string; ended: string }>((resolve) => {
      let status = 0;
      let got = '';
      const req = http.get({ host: '127.0.0.1', port: h.port(), path: '/midbody', agent: false }, (res) => {
        status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (c: string) => (got += c));
        res.on('end', () => done('end'));
        res.on('aborted', () => done('aborted'));
        res.on('error', () => done('error'));
      });
      req.on('error', () => done('req-error'));
      const t = setTimeout(() => done('hang'), 2000);
      function done(ended: string) {
        clearTimeout(t);
        req.destroy();
        resolve({ status, got, ended });
      }
    });
    assert.equal(outcome.status, 200);
    assert.equal(outcome.got, 'partial');
    assert.ok(outcome.ended === 'aborted' || outcome.ended === 'error', outcome.ended);
  });

  it('a pooled connection the upstream closed while idle is not reused', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await request(h.port(), { path: '/ka' });
      assert.equal(r.status, 200, `request ${i}: ${r.body}`);
      assert.equal(r.body, 'fresh');
      await sleep(60);
    }
  });

  it('a route timeout counts upstream_rq_timeout', async () => {
    const r = await request(h.port(), { path: '/slow' });
    assert.equal(r.status, 504);
    assert.equal(await stat(h.adminPort, 'cluster.slow.upstream_rq_timeout'), 1);
  });

  it('a route timeout is charged to the cluster as upstream_rq_504', async () => {
    const before = (await stat(h.adminPort, 'cluster.slow.upstream_rq_504')) ?? 0;
    await request(h.port(), { path: '/slow' });
    assert.equal(await stat(h.adminPort, 'cluster.slow.upstream_rq_504'), before + 1);
  });
});
