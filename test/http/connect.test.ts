// CONNECT as Envoy handles it: off by default (403), matched only by
// connect_matcher routes, proxied upstream as-is, or terminated with a route's
// connect_config (raw TCP to the cluster's host, a 200 once connected, 503 UF
// when the connection fails); over HTTP/1.1 and HTTP/2. Also WebSocket over
// HTTP/2 (RFC 8441 extended CONNECT) to an HTTP/1.1 upstream.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { tempLog } from '../helpers/access-log-file.js';
import { httpBootstrap, type Running, startHerald, stat, staticCluster } from '../helpers/harness.js';

/** A TCP echo server: echoes every read and answers a FIN with "bye" and its own FIN. */
async function startEcho(): Promise<{ server: net.Server; port: number; received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => {
      received.push(d);
      s.write(d);
    });
    s.on('end', () => s.end('bye'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, received };
}

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

const CONNECT_ROUTE = (cluster: string, extra = '') => `- match: { connect_matcher: {} }
  route: { cluster: ${cluster}${extra} }`;

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

describe('CONNECT terminated with connect_config', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let h: Running;
  const log = tempLog();
  before(async () => {
    echo = await startEcho();
    const dead = await closedPort();
    h = await startHerald(
      httpBootstrap({
        hcmExtra: `upgrade_configs: [{ upgrade_type: CONNECT }]
http2_protocol_options: {}
${log.yaml('%REQ(:AUTHORITY)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT%')}`,
        routes: `- match: { connect_matcher: {}, headers: [{ name: ":authority", string_match: { exact: "dead.example:1" } }] }
  route: { cluster: dead, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
${CONNECT_ROUTE('echo', ', upgrade_configs: [{ upgrade_type: CONNECT, connect_config: { allow_post: true } }]')}
- match: { prefix: /tcp }
  route: { cluster: echo, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: { allow_post: true } }] }`,
        clusters: `${staticCluster('echo', [echo.port])}\n${staticCluster('dead', [dead])}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    await closeServer(echo.server);
  });

  it('answers 200 once connected, then carries raw bytes and the half-close both ways', async () => {
    echo.received.length = 0;
    const r = await rawExchange(
      h.port(),
      'CONNECT echo.example:7 HTTP/1.1\r\nHost: echo.example:7\r\nx-secret: not-for-the-host\r\n\r\n',
      ['hello', ' world'],
    );
    assert.match(r.head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(r.head, /transfer-encoding|content-length|x-envoy-upstream-service-time/i);
    // The host gets the payload only: no request headers.
    assert.equal(Buffer.concat(echo.received).toString(), 'hello world');
    assert.equal(r.body, 'hello worldbye', 'echoed bytes, then the FIN answered after the client FIN');
    assert.match((await log.find(/^echo\.example:7 /)) ?? '', /^echo\.example:7 200 - via_upstream 11 14$/);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_total'), 1);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_active'), 0);
    assert.equal(await stat(h.adminPort, 'cluster.echo.upstream_cx_total'), 1);
  });

  it('a connection that fails is a 503 with flag UF', async () => {
    const r = await rawExchange(h.port(), 'CONNECT dead.example:1 HTTP/1.1\r\nHost: dead.example:1\r\n\r\n');
    assert.match(r.head, /^HTTP\/1\.1 503 /);
    assert.match(
      r.body,
      /^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure/,
    );
    assert.match(
      (await log.find(/^dead\.example:1 /)) ?? '',
      /^dead\.example:1 503 UF upstream_reset_before_response_started\{connection_failure\}/,
    );
    assert.equal(await stat(h.adminPort, 'cluster.dead.upstream_cx_connect_fail'), 1);
  });

  it('allow_post: a POST body is the payload, the host bytes the response body', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: h.port(), method: 'POST', path: '/tcp', agent: false },
        (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end('posted');
    });
    assert.deepEqual(r, { status: 200, body: 'postedbye' });
  });

  it('HTTP/2 CONNECT: 200, then DATA frames carry the tunnel both ways', async () => {
    const session = http2.connect(`http://127.0.0.1:${h.port()}`);
    try {
      const out = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request({ ':method': 'CONNECT', ':authority': 'echo.example:7' });
        let status = 0;
        let body = '';
        s.on('response', (hd) => {
          status = Number(hd[':status']);
          s.write('over-h2');
        });
        s.on('data', (d: Buffer) => {
          body += d.toString();
          if (body === 'over-h2') s.end();
        });
        s.on('end', () => resolve({ status, body }));
        s.on('error', reject);
      });
      assert.deepEqual(out, { status: 200, body: 'over-h2bye' });
    } finally {
      session.close();
    }
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

describe('WebSocket over HTTP/2 (extended CONNECT) to an HTTP/1.1 upstream', () => {
  let up: http.Server;
  const seen: { method: string; url: string; upgrade: string; connection: string }[] = [];
  let h: Running;
  let off: Running;
  before(async () => {
    up = http.createServer((_q, s) => s.end('plain'));
    up.on('upgrade', (req, sock: net.Socket) => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        upgrade: String(req.headers.upgrade),
        connection: String(req.headers.connection),
      });
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      sock.on('data', (d: Buffer) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
      sock.on('end', () => sock.end());
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    const bootstrap = (allow: boolean) =>
      httpBootstrap({
        hcmExtra: `upgrade_configs: [{ upgrade_type: websocket }]
http2_protocol_options: { allow_connect: ${allow} }`,
        routes: '- match: { prefix: / }\n  route: { cluster: ws }',
        clusters: staticCluster('ws', [port]),
      });
    h = await startHerald(bootstrap(true));
    off = await startHerald(bootstrap(false));
  });
  after(async () => {
    await h.stop();
    await off.stop();
    up.closeAllConnections();
    await closeServer(up);
  });

  /** The server's SETTINGS as the client sees them. */
  function remoteSettings(session: http2.ClientHttp2Session): Promise<http2.Settings> {
    return new Promise((resolve) => session.once('remoteSettings', resolve));
  }

  it('allow_connect advertises extended CONNECT; :protocol websocket becomes GET + Upgrade, 101 becomes 200', async () => {
    const session = http2.connect(`http://127.0.0.1:${h.port()}`);
    try {
      assert.equal((await remoteSettings(session)).enableConnectProtocol, true);
      const out = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request({
          ':method': 'CONNECT',
          ':protocol': 'websocket',
          ':scheme': 'http',
          ':path': '/chat?room=1',
          ':authority': 'ws.example',
        });
        let status = 0;
        let body = '';
        s.on('response', (hd) => {
          status = Number(hd[':status']);
          s.write('frame');
        });
        s.on('data', (d: Buffer) => {
          body += d.toString();
          if (body === 'echo:frame') s.end();
        });
        s.on('end', () => resolve({ status, body }));
        s.on('error', reject);
      });
      assert.deepEqual(out, { status: 200, body: 'echo:frame' });
      assert.deepEqual(seen, [
        { method: 'GET', url: '/chat?room=1', upgrade: 'websocket', connection: 'upgrade' },
      ]);
      assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_total'), 1);
    } finally {
      session.close();
    }
  });

  it('without allow_connect the server does not offer extended CONNECT', async () => {
    const session = http2.connect(`http://127.0.0.1:${off.port()}`);
    try {
      assert.notEqual((await remoteSettings(session)).enableConnectProtocol, true);
    } finally {
      session.close();
    }
  });
});

describe('CONNECT config', () => {
  const withRoute = (route: string) =>
    httpBootstrap({
      hcmExtra: 'upgrade_configs: [{ upgrade_type: CONNECT }]',
      routes: `- match: { connect_matcher: {} }\n  route: { cluster: c, ${route} }`,
      clusters: staticCluster('c', [9]),
    });

  it('connect_config on a non-CONNECT upgrade is an error, as in Envoy', async () => {
    await assert.rejects(
      startHerald(withRoute('upgrade_configs: [{ upgrade_type: websocket, connect_config: {} }]')),
      /connect_config.*non-CONNECT upgrade type websocket/s,
    );
  });

  it('proxy_protocol_config is rejected rather than ignored', async () => {
    await assert.rejects(
      startHerald(
        withRoute(
          'upgrade_configs: [{ upgrade_type: CONNECT, connect_config: { proxy_protocol_config: { version: V1 } } }]',
        ),
      ),
      /proxy_protocol_config/,
    );
  });
});

describe('WebSocket from HTTP/1.1 to an HTTP/2 upstream', () => {
  let up: http2.Http2Server;
  let h: Running;
  let seen: http2.IncomingHttpHeaders | undefined;
  before(async () => {
    up = http2.createServer({ settings: { enableConnectProtocol: true } });
    up.on('stream', (s, hd) => {
      seen = hd;
      s.respond({ ':status': 200 });
      s.on('data', (d: Buffer) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
      s.on('end', () => s.end());
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'upgrade_configs: [{ upgrade_type: websocket }]',
        routes: '- match: { prefix: / }\n  route: { cluster: h2 }',
        clusters: staticCluster('h2', [(up.address() as net.AddressInfo).port], 'http2_protocol_options: {}'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await new Promise((r) => up.close(r));
  });

  it("goes up as an extended CONNECT with :protocol, and its 200 is the client's 101", async () => {
    const r = await rawExchange(
      h.port(),
      'GET /chat HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
      ['frame'],
    );
    assert.match(r.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(r.head, /\r\nupgrade: websocket\r\n/i);
    assert.equal(r.body, 'echo:frame');
    assert.equal(seen?.[':method'], 'CONNECT');
    assert.equal(seen?.[':protocol'], 'websocket');
    assert.equal(seen?.[':path'], '/chat');
  });
});
