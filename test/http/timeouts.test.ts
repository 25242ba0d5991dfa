// HCM timeouts and connection limits, as Envoy applies them.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  stat,
  staticCluster,
} from '../helpers/harness.js';

function rawExchange(port: number, send: string, waitMs: number): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(send));
    let data = '';
    let closed = false;
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('close', () => {
      closed = true;
    });
    s.on('error', () => {});
    setTimeout(() => {
      s.destroy();
      resolve({ data, closed });
    }, waitMs);
  });
}

describe('HCM timeouts', () => {
  let up: http.Server;
  let h: Running;
  before(async () => {
    // /slow answers headers at once, then stays silent; /hang never answers.
    up = http.createServer((req, res) => {
      if (req.url?.startsWith('/slow')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first');
        return;
      }
      if (req.url?.includes('/hang')) return;
      res.end('ok');
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        hcmExtra: `stream_idle_timeout: 0.3s
request_timeout: 0.5s
request_headers_timeout: 0.3s
common_http_protocol_options: { max_requests_per_connection: 2 }`,
        routes: `- match: { prefix: /route-idle }
  route: { cluster: up, idle_timeout: 0.1s, timeout: 0s }
- match: { prefix: / }
  route: { cluster: up, timeout: 0s }`,
        clusters: staticCluster('up', [port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  });

  it('stream_idle_timeout: no upstream response -> 408 "stream timeout"', async () => {
    const t = Date.now();
    const r = await request(h.port(), { path: '/hang' });
    assert.equal(r.status, 408);
    assert.equal(r.body, 'stream timeout');
    assert.ok(Date.now() - t >= 250, 'waited for the idle timeout');
    assert.ok((await stat(h.adminPort, 'http.test.downstream_rq_idle_timeout'))! >= 1);
  });

  it('a route idle_timeout overrides the HCM stream_idle_timeout', async () => {
    const t = Date.now();
    const r = await request(h.port(), { path: '/route-idle/hang' });
    assert.equal(r.status, 408);
    assert.ok(Date.now() - t < 280, `route idle timeout (0.1 s) applied, took ${Date.now() - t} ms`);
  });

  it('an idle response after headers is reset, not answered with 408', async () => {
    const r = await rawExchange(h.port(), 'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 800);
    assert.match(r.data, /^HTTP\/1\.1 200 OK/);
    assert.match(r.data, /first/);
    assert.doesNotMatch(r.data, /408/);
    assert.equal(r.closed, true);
  });

  it('request_timeout: a request body that keeps trickling but never completes -> 408 "request timeout"', async () => {
    // One byte every 100 ms keeps the stream from going idle (0.3 s); the whole request is late (0.5 s).
    const r = await new Promise<{ data: string }>((resolve) => {
      const s = net.connect(h.port(), '127.0.0.1', () =>
        s.write('POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n'),
      );
      const drip = setInterval(() => s.write('.'), 100);
      let data = '';
      s.on('data', (d) => (data += d.toString('latin1')));
      s.on('error', () => {});
      setTimeout(() => {
        clearInterval(drip);
        s.destroy();
        resolve({ data });
      }, 900);
    });
    assert.match(r.data, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(r.data, /request timeout$/);
  });

  it('request_headers_timeout: headers that never finish close the connection', async () => {
    const r = await rawExchange(h.port(), 'GET / HTTP/1.1\r\nHost: x\r\n', 700);
    assert.equal(r.data, '');
    assert.equal(r.closed, true);
    assert.ok((await stat(h.adminPort, 'http.test.downstream_rq_header_timeout'))! >= 1);
  });

  it('max_requests_per_connection: the 2nd response says connection: close and the socket closes', async () => {
    const r = await rawExchange(
      h.port(),
      'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n',
      500,
    );
    const responses = r.data.split('HTTP/1.1 200 OK').length - 1;
    assert.equal(responses, 2);
    const second = r.data.slice(r.data.lastIndexOf('HTTP/1.1 200 OK'));
    assert.match(second, /\r\nconnection: close\r\n/);
    assert.equal(r.closed, true);
    assert.ok((await stat(h.adminPort, 'http.test.downstream_cx_max_requests_reached'))! >= 1);
  });
});

describe('path normalization', () => {
  let up: http.Server;
  let h: Running;
  const seen: string[] = [];
  before(async () => {
    up = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end(req.url);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    const cfg = (extra: string, name: string) =>
      httpBootstrap({
        hcmExtra: extra,
        routes: `- match: { prefix: /admin }
  direct_response: { status: 403 }
- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [port]),
      }).replace('- name: main', `- name: ${name}`);
    h = await startHerald(
      cfg(
        'normalize_path: true\nmerge_slashes: true\npath_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT',
        'main',
      ),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  });

  it('resolves dot segments before routing (so /public/../admin hits the /admin route)', async () => {
    const r = await rawExchange(h.port(), 'GET /public/../admin HTTP/1.1\r\nHost: x\r\n\r\n', 300);
    assert.match(r.data, /^HTTP\/1\.1 403 Forbidden/);
  });

  it('decodes unreserved percent-escapes and merges slashes; the upstream sees the normal form', async () => {
    const r = await rawExchange(h.port(), 'GET //a//%7Euser/./b?x=1//2 HTTP/1.1\r\nHost: x\r\n\r\n', 300);
    assert.match(r.data, /^HTTP\/1\.1 200 OK/);
    assert.equal(seen[seen.length - 1], '/a/~user/b?x=1//2');
  });

  it('an escaped slash is unescaped and redirected (UNESCAPE_AND_REDIRECT)', async () => {
    const r = await rawExchange(h.port(), 'GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n', 300);
    assert.match(r.data, /^HTTP\/1\.1 307 Temporary Redirect\r\n/);
    assert.match(r.data, /\r\nlocation: \/a\/b\r\n/);
  });

  it('a path that cannot be normalized gets 400', async () => {
    const r = await rawExchange(h.port(), 'GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n', 300);
    assert.match(r.data, /^HTTP\/1\.1 400 Bad Request/);
  });
});
