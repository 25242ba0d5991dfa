// CONNECT as Envoy handles it: off by default (403), matched only by
// connect_matcher routes, and proxied upstream as-is over HTTP/1.1 or HTTP/2,
// the upstream's 2xx opening a tunnel.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, startHerald, stat, staticCluster } from '../helpers/harness.js';

async function closeServer(s: net.Server): Promise<void> {
  await new Promise((r) => s.close(r));
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await closeServer(s);
  return port;
}

/**
 * A raw HTTP/1.1 client: sends `head`, then (once the response head has arrived) each of `send`,
 * then half-closes. Resolves with the response head and every byte after it, at close.
 */
function rawExchange(
  port: number,
  head: string,
  send: string[] = [],
): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => s.write(head));
    let buf = '';
    let sent = false;
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (!sent && buf.includes('\r\n\r\n')) {
        sent = true;
        let i = 0;
        const tick = setInterval(() => {
          if (i < send.length) s.write(send[i++]!);
          else {
            clearInterval(tick);
            s.end();
          }
        }, 20);
      }
    });
    s.on('end', () => {
      if (!sent) s.end();
    });
    s.on('close', () => {
      const at = buf.indexOf('\r\n\r\n');
      resolve(at < 0 ? { head: buf, body: '' } : { head: buf.slice(0, at), body: buf.slice(at + 4) });
    });
    s.on('error', reject);
    setTimeout(() => reject(new Error(`timeout: ${JSON.stringify(buf)}`)), 5000).unref();
  });
}

const CONNECT_ROUTE = (cluster: string) => `- match: { connect_matcher: {} }
  route: { cluster: ${cluster} }`;

describe('CONNECT without upgrade_configs', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { connect_matcher: {}, headers: [{ name: x-go, present_match: true }] }
  route: { cluster: c }
- match: { prefix: / }
  route: { cluster: c }`,
        clusters: staticCluster('c', [await closedPort()]),
      }),
    );
  });
  after(() => h.stop());

  it('is answered with a local 403 and the connection closed, as Envoy does', async () => {
    const r = await rawExchange(
      h.port(),
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nx-go: 1\r\n\r\n',
    );
    assert.match(r.head, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(r.head, /\r\nconnection: close\r\n/i);
    // Decided before routing: a CONNECT that no route matches is refused the same way, not 404.
    const noRoute = await rawExchange(
      h.port(),
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
    );
    assert.match(noRoute.head, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_total'), 0);
  });
});

describe('CONNECT route matching', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'upgrade_configs: [{ upgrade_type: CONNECT }]',
        routes: `- match: { prefix: / }
  direct_response: { status: 200, body: { inline_string: plain } }`,
        clusters: staticCluster('c', [9]),
      }),
    );
  });
  after(() => h.stop());

  it('a path matcher does not match an HTTP/1 CONNECT (it has no path): 404', async () => {
    const r = await rawExchange(
      h.port(),
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
    );
    assert.match(r.head, /^HTTP\/1\.1 404 Not Found\r\n/);
  });

  it('a CONNECT target must be host:port: 400', async () => {
    const r = await rawExchange(h.port(), 'CONNECT /path HTTP/1.1\r\nHost: example.com\r\n\r\n');
    assert.match(r.head, /^HTTP\/1\.1 400 /);
  });

  it('a CONNECT with a body is refused: 400 for content-length, 501 for transfer-encoding', async () => {
    const cl = await rawExchange(
      h.port(),
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 3\r\n\r\nabc',
    );
    assert.match(cl.head, /^HTTP\/1\.1 400 /);
    const te = await rawExchange(
      h.port(),
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    assert.match(te.head, /^HTTP\/1\.1 501 /);
  });

  it('other requests still match the path routes', async () => {
    const r = await fetch(`http://127.0.0.1:${h.port()}/x`);
    assert.equal(await r.text(), 'plain');
  });
});

describe('CONNECT proxied upstream (no connect_config)', () => {
  let up: http.Server;
  const seen: { method: string; url: string; host: string; head: string }[] = [];
  let h: Running;
  before(async () => {
    up = http.createServer((_q, s) => s.end('plain'));
    up.on('connect', (req, sock: net.Socket, head: Buffer) => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        host: String(req.headers.host),
        head: head.toString(),
      });
      if (req.url === 'refused.example:443') {
        sock.end('HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 4\r\n\r\nnope');
        return;
      }
      sock.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) sock.write(Buffer.concat([Buffer.from('echo:'), head]));
      sock.on('data', (d: Buffer) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
      sock.on('end', () => sock.end('bye'));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'upgrade_configs: [{ upgrade_type: CONNECT }]',
        routes: CONNECT_ROUTE('proxy'),
        clusters: staticCluster('proxy', [(up.address() as net.AddressInfo).port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await closeServer(up);
  });

  it('the upstream gets the CONNECT and its 200 opens a tunnel both ways', async () => {
    const r = await rawExchange(
      h.port(),
      'CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n',
      ['hello', 'world'],
    );
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(r.head, /transfer-encoding|content-length/i);
    assert.deepEqual(
      seen.map((s) => [s.method, s.url, s.host]),
      [['CONNECT', 'target.example:443', 'target.example:443']],
    );
    assert.ok(r.body.startsWith('echo:') && r.body.endsWith('bye'), r.body);
    assert.equal(r.body.slice(0, -3).replaceAll('echo:', ''), 'helloworld');
    assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_total'), 1);
  });

  it("bytes sent before the upstream's 2xx wait for it; a refusal is passed on", async () => {
    seen.length = 0;
    const early = await rawExchange(
      h.port(),
      'CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\nearly',
    );
    assert.match(early.head, /^HTTP\/1\.1 200 /);
    // Held until the tunnel was open, so the upstream read them after its 200, not as the head.
    assert.equal(seen[0]?.head, '');
    assert.equal(early.body, 'echo:earlybye');
    const refused = await rawExchange(
      h.port(),
      'CONNECT refused.example:443 HTTP/1.1\r\nHost: refused.example:443\r\n\r\n',
    );
    assert.match(refused.head, /^HTTP\/1\.1 407 /);
    assert.equal(refused.body, 'nope');
  });
});

describe('CONNECT to an HTTP/2 upstream', () => {
  let up: http2.Http2Server;
  let h: Running;
  let seen: http2.IncomingHttpHeaders | undefined;
  before(async () => {
    up = http2.createServer();
    up.on('stream', (s, hd) => {
      seen = hd;
      s.respond({ ':status': 200 });
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end('bye'));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'upgrade_configs: [{ upgrade_type: CONNECT }]',
        routes: CONNECT_ROUTE('h2'),
        clusters: staticCluster('h2', [(up.address() as net.AddressInfo).port], 'http2_protocol_options: {}'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await new Promise((r) => up.close(r));
  });

  it('goes up as an HTTP/2 CONNECT (:authority only) and tunnels', async () => {
    const r = await rawExchange(
      h.port(),
      'CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n',
      ['ping'],
    );
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.equal(r.body, 'pingbye');
    assert.equal(seen?.[':method'], 'CONNECT');
    assert.equal(seen?.[':authority'], 'target.example:443');
    assert.equal(seen?.[':path'], undefined);
  });
});
