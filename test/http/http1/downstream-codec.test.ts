// Herald's downstream HTTP/1 codec (src/http/http1/server-connection.ts) seen
// from raw `net` clients: HTTP/1.0 handling, Host, Connection: close,
// upgrades, the headers Herald adds and strips, pipelining, clients that go
// away mid-body, and local replies to requests whose body was not read.
import assert from 'node:assert/strict';
import http from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  bootstrap,
  cluster,
  hcmFilter,
  listener,
  rawExchange,
  simpleRouteConfig,
  sleep,
} from '../../helpers/data-path.js';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  stat,
  staticCluster,
} from '../../helpers/harness.js';
import {
  parseResponses,
  type RawUpstream,
  rawClient,
  startRawUpstream,
  waitFor,
  withTimeout,
} from '../../helpers/raw-http.js';

const UPSTREAM_DATE = 'Tue, 01 Jan 2019 00:00:00 GMT';

describe('HTTP/1 downstream codec', () => {
  let up: RawUpstream;
  let half: RawUpstream;
  let h: Running;
  const main = () => h.port('main');
  const h10 = () => h.port('h10');

  before(async () => {
    // Echoes method, path and body; adds the hop-by-hop and server headers a proxy must not pass on.
    // /up/chunked answers with a chunked body; /up/date sends its own Date header.
    up = await startRawUpstream((req, s) => {
      const body = `${req.method} ${req.path} ${req.body.toString('latin1')}`;
      if (req.path.startsWith('/up/chunked')) {
        s.write(
          `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
        );
        return;
      }
      if (req.path.startsWith('/up/obs')) {
        // Answers with the bytes it received in x-obs (hex) and an obs-text header of its own.
        const got = Buffer.from(req.headers['x-obs'] ?? '', 'latin1').toString('hex');
        s.write(
          Buffer.from(
            `HTTP/1.1 200 OK\r\nX-Obs: \xe9t\xe9\r\nContent-Length: ${got.length}\r\n\r\n${got}`,
            'latin1',
          ),
        );
        return;
      }
      if (req.path.startsWith('/up/date')) {
        s.write(`HTTP/1.1 200 OK\r\nDate: ${UPSTREAM_DATE}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        return;
      }
      s.write(
        `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nKeep-Alive: timeout=5, max=100\r\nConnection: keep-alive\r\nServer: upstream-server\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    });
    // Records requests and never answers.
    half = await startRawUpstream(() => {});
    const routes = [
      {
        match: { prefix: '/up/obs-config' },
        route: { cluster: 'up' },
        request_headers_to_add: [{ header: { key: 'x-obs', value: 'café' } }],
      },
      { match: { prefix: '/up' }, route: { cluster: 'up' } },
      { match: { prefix: '/half' }, route: { cluster: 'half' } },
    ];
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('main', [
            { filters: [hcmFilter({ statPrefix: 'dc', routeConfig: simpleRouteConfig(routes) })] },
          ]),
          listener('h10', [
            {
              filters: [
                hcmFilter({
                  statPrefix: 'dc10',
                  routeConfig: simpleRouteConfig(routes),
                  extra: { http_protocol_options: { accept_http_10: true } },
                }),
              ],
            },
          ]),
        ],
        clusters: [cluster('up', [up.port]), cluster('half', [half.port])],
      }),
    );
  });

  after(async () => {
    await h?.stop();
    await up?.close();
    await half?.close();
  });

  it('HTTP/1.0 is answered 426 and the connection closed (accept_http_10 is off by default)', async () => {
    const n = up.requests.length;
    const r = await rawExchange(main(), 'GET /up/10 HTTP/1.0\r\nHost: x\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 426 /);
    assert.equal(up.requests.length, n, 'the request must not reach the upstream');
  });

  it('accept_http_10: an HTTP/1.0 request is proxied and the connection closed after the response', async () => {
    const r = await rawExchange(h10(), 'GET /up/10a HTTP/1.0\r\nHost: x\r\n\r\n', 3000);
    assert.equal(r.closed, true, 'Herald must close an HTTP/1.0 connection without keep-alive');
    const [res, ...rest] = parseResponses(r.data);
    assert.equal(rest.length, 0);
    assert.equal(res?.status, 200);
    assert.equal(res?.body, 'GET /up/10a ');
    assert.equal(res?.headers.connection, 'close');
    assert.equal(res?.headers['keep-alive'], undefined);
  });

  it('accept_http_10: Connection: keep-alive keeps the connection open', async () => {
    const c = await rawClient(h10());
    try {
      c.socket.write('GET /up/ka1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      await c.waitData((t) => t.includes('GET /up/ka1 '), 3000, 'the first response');
      const [res] = parseResponses(c.data());
      assert.equal(res?.status, 200);
      assert.equal(res?.headers.connection, 'keep-alive');
      assert.equal(res?.headers['keep-alive'], undefined);
      await sleep(200);
      assert.equal(c.closed, false, 'closed despite Connection: keep-alive');
      // The next request (without keep-alive) is answered, then the connection closes.
      c.socket.write('GET /up/ka2 HTTP/1.0\r\nHost: x\r\n\r\n');
      await c.waitClosed(3000);
      const rs = parseResponses(c.data());
      assert.deepEqual(
        rs.map((x) => [x.status, x.body]),
        [
          [200, 'GET /up/ka1 '],
          [200, 'GET /up/ka2 '],
        ],
      );
      assert.equal(rs[1]!.headers.connection, 'close');
    } finally {
      c.destroy();
    }
  });

  it('an HTTP/1.1 request without Host is 400', async () => {
    const n = up.requests.length;
    const r = await rawExchange(main(), 'GET /up/nohost HTTP/1.1\r\n\r\n', 3000, '127.0.0.1', (d) =>
      d.includes('\r\n\r\n'),
    );
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
    assert.equal(up.requests.length, n);
  });

  it('Connection: close from the client: the response says connection: close and the socket closes', async () => {
    const r = await rawExchange(main(), 'GET /up/cc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    const [res] = parseResponses(r.data);
    assert.equal(res?.status, 200);
    assert.equal(res?.body, 'GET /up/cc ');
    assert.equal(res?.headers.connection, 'close');
  });

  it('a WebSocket upgrade without upgrade_configs is 403 and never reaches the upstream', async () => {
    const n = up.requests.length;
    const r = await rawExchange(
      main(),
      'GET /up/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      3000,
      '127.0.0.1',
      (d) => d.includes('\r\n\r\n'),
    );
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 403 /);
    assert.equal(up.requests.length, n);
  });

  it('responses carry date and server: envoy, never keep-alive (proxied and local replies)', async () => {
    const r = await rawExchange(
      main(),
      'GET /up/hdrs HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3000,
    );
    assert.equal(r.closed, true);
    const rs = parseResponses(r.data);
    assert.deepEqual(
      rs.map((x) => x.status),
      [200, 404],
    );
    for (const res of rs) {
      const names = res.rawHeaders.map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
      assert.ok(!names.includes('keep-alive'), res.rawHeaders.join('\n'));
      assert.equal(names.filter((n) => n === 'date').length, 1, res.rawHeaders.join('\n'));
      assert.ok(!Number.isNaN(Date.parse(res.headers.date!)), res.headers.date);
      assert.equal(res.headers.server, 'envoy');
    }
    // The upstream's keep-alive connection header is not passed on either.
    assert.notEqual(rs[0]!.headers.connection, 'keep-alive');
  });

  it('obs-text bytes (0x80-0xFF) in header values pass through unchanged, both ways', async () => {
    const r = await rawExchange(
      main(),
      Buffer.from('GET /up/obs HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xe9\r\nConnection: close\r\n\r\n', 'latin1'),
      3000,
    );
    const [res] = parseResponses(r.data);
    assert.equal(res?.status, 200);
    assert.equal(res?.body, Buffer.from('caf\xe9', 'latin1').toString('hex'), 'request header bytes changed');
    assert.equal(
      Buffer.from(res?.headers['x-obs'] ?? '', 'latin1').toString('hex'),
      'e974e9',
      'response header bytes changed',
    );
  });

  it('a non-ASCII header value from the config leaves as its UTF-8 bytes', async () => {
    const r = await rawExchange(
      main(),
      'GET /up/obs-config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3000,
    );
    assert.equal(parseResponses(r.data)[0]?.body, Buffer.from('café', 'utf8').toString('hex'));
  });

  it('the upstream Date header is passed through, not replaced', async () => {
    const r = await rawExchange(
      main(),
      'GET /up/date HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3000,
    );
    const [res] = parseResponses(r.data);
    assert.equal(res?.status, 200);
    assert.equal(res?.headers.date, UPSTREAM_DATE);
  });

  it('accept_http_10: a response without content-length goes unchunked and ends with the connection', async () => {
    const r = await rawExchange(
      h10(),
      'GET /up/chunked HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n',
      3000,
    );
    assert.equal(r.closed, true);
    const text = r.data.toString('latin1');
    const [head = '', body] = text.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(head, /transfer-encoding/i);
    assert.match(head, /\r\nconnection: close(\r\n|$)/i);
    assert.equal(body, 'hello world');
  });

  it('two pipelined POSTs with bodies in one write are both answered, in order', async () => {
    const r = await rawExchange(
      main(),
      'POST /up/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfirst-body' +
        'POST /up/p2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nsecond\r\n5\r\n-body\r\n0\r\n\r\n',
      3000,
    );
    assert.equal(r.closed, true);
    assert.deepEqual(
      parseResponses(r.data).map((x) => [x.status, x.body]),
      [
        [200, 'POST /up/p1 first-body'],
        [200, 'POST /up/p2 second-body'],
      ],
    );
  });

  /** Sends headers and half of a 100-byte body to /half, waits for the upstream to see it, then runs `leave`. */
  async function halfBody(
    path: string,
    leave: (c: Awaited<ReturnType<typeof rawClient>>) => void,
    chunked = false,
  ): Promise<void> {
    const before = half.conns.length;
    const c = await rawClient(main());
    try {
      if (chunked) {
        c.socket.write(
          `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n32\r\n${'a'.repeat(50)}\r\n`,
        );
      } else {
        c.socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n${'a'.repeat(50)}`);
      }
      await waitFor(
        () => {
          const conn = half.conns[before];
          return !!conn && Buffer.concat(conn.received).toString('latin1').includes('a'.repeat(50));
        },
        3000,
        'the upstream to receive the head and half the body',
      );
      leave(c);
      const conn = half.conns[before]!;
      const complete = () => half.requests.some((r) => r.path === path);
      await waitFor(
        () => conn.ended || conn.closed || complete(),
        2000,
        'Herald to close the upstream connection (the request is aborted)',
      );
      assert.ok(!complete(), 'the upstream received a complete request although the client sent half of it');
      assert.ok(conn.ended || conn.closed);
    } finally {
      c.destroy();
    }
    // Herald is still serving.
    const ok = await withTimeout(request(main(), { path: '/up/alive' }), 3000, 'GET /up/alive');
    assert.equal(ok.status, 200);
  }

  it('a client that resets (RST) after half the body: the upstream request is aborted', async () => {
    await halfBody('/half/rst', (c) => c.socket.resetAndDestroy());
  });

  it('a client that closes (destroy: FIN) after half the body: the upstream request is aborted', async () => {
    await halfBody('/half/destroy', (c) => c.destroy());
  });

  it('a client that half-closes (end: FIN) after half a content-length body: the upstream request is aborted', async () => {
    await halfBody('/half/fin', (c) => c.socket.end());
  });

  it('a client that half-closes (end: FIN) mid chunked body: the upstream never sees a complete request', async () => {
    await halfBody('/half/chunked', (c) => c.socket.end(), true);
  });

  /** A POST with a 10 MB content-length to an unrouted path; only the first 256 KB are sent. */
  async function unreadBody(): Promise<{ text: string; closed: boolean }> {
    const c = await rawClient(main());
    try {
      c.socket.write(`POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`);
      c.socket.write(Buffer.alloc(256 * 1024, 'b'));
      const text = await c.waitData((t) => t.includes('\r\n\r\n'), 3000, 'the 404');
      // Nothing may hang: the connection is closed, or at least marked to close, promptly.
      await waitFor(
        () => c.closed || /\r\nconnection: close\r\n/i.test(text),
        3000,
        'close or connection: close',
      );
      await sleep(50);
      return { text: c.data().toString('latin1'), closed: c.closed };
    } finally {
      c.destroy();
    }
  }

  it('a local reply (no route 404) to a POST whose large body is not read: the connection closes', async () => {
    const before = (await stat(h.adminPort, 'http.dc.no_route')) ?? 0;
    const r = await unreadBody();
    assert.match(r.text, /^HTTP\/1\.1 404 /);
    assert.ok(r.closed || /\r\nconnection: close\r\n/i.test(r.text), r.text);
    assert.equal(await stat(h.adminPort, 'http.dc.no_route'), before + 1);
  });

  it('that local reply says connection: close (Envoy sets it when the request is not complete)', async () => {
    const r = await unreadBody();
    assert.match(r.text, /^HTTP\/1\.1 404 /);
    assert.match(r.text, /\r\nconnection: close\r\n/i);
  });
});

describe('absolute-form request targets', () => {
  let up: http.Server;
  let h: Running;
  before(async () => {
    up = http.createServer((req, res) => res.end(`${req.headers.host} ${req.url}`));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        domains: '"proxied.example"',
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  });

  it('GET http://host/path routes on the URL host and sends origin-form upstream', async () => {
    const data = await new Promise<string>((resolve) => {
      const s = connect(h.port(), '127.0.0.1', () =>
        s.write(
          'GET http://proxied.example/a/b?x=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n',
        ),
      );
      let d = '';
      s.on('data', (c) => (d += c));
      s.on('close', () => resolve(d));
    });
    assert.match(data, /^HTTP\/1\.1 200 OK/);
    assert.match(data, /proxied\.example \/a\/b\?x=1$/);
  });
});
