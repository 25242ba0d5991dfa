// HTTP/1.1 downstream behaviour over real sockets: keep-alive, streamed
// bodies, Expect: 100-continue, pipelining and protocol errors.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { cluster, httpConfig, rawExchange, rawTimeline } from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

interface SeenReq {
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** Each of `parts` appears in `text` (the first not at its start), each after the one before. */
function assertInOrder(text: string, parts: string[]): void {
  const at = parts.map((p) => text.indexOf(p));
  assert.ok(at[0]! > 0 && at.every((x, i) => i === 0 || x > at[i - 1]!), text);
}

describe('HTTP/1.1 downstream', () => {
  let upstream: http.Server;
  const seen: SeenReq[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let h: Running;
  before(async () => {
    // /echo streams the request body back; /delay/<ms>/<tag> answers <tag> after a delay.
    upstream = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      const m = /^\/delay\/(\d+)\/(\w+)/.exec(req.url ?? '');
      if (m) {
        req.resume();
        const t = setTimeout(() => {
          timers.delete(t);
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`tag:${m[2]}`);
        }, Number(m[1]));
        timers.add(t);
        return;
      }
      if (req.url?.startsWith('/echo')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        req.pipe(res);
        return;
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
        res.end(req.method === 'HEAD' ? undefined : 'ok');
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as net.AddressInfo).port;
    h = await startHerald(
      httpConfig({
        hcmExtra: { stat_prefix: 'h1' },
        routes: [{ match: { prefix: '/' }, route: { cluster: 'up' } }],
        clusters: [cluster('up', [port])],
      }),
    );
  });
  after(async () => {
    for (const t of timers) clearTimeout(t);
    await h.stop();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  it('keep-alive: several requests share one downstream connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const cx0 = (await stat(h.adminPort, 'http.h1.downstream_cx_total')) ?? 0;
    const rq0 = (await stat(h.adminPort, 'http.h1.downstream_rq_total')) ?? 0;
    const ports = new Set<number>();
    try {
      for (let i = 0; i < 5; i++) {
        const body = await new Promise<string>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port: h.port(), path: `/ka/${i}`, agent }, (res) => {
            ports.add(res.socket.localPort ?? -1);
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (b += c));
            res.on('end', () => resolve(b));
          });
          req.on('error', reject);
        });
        assert.equal(body, 'ok');
      }
    } finally {
      agent.destroy();
    }
    assert.equal(ports.size, 1);
    assert.equal(await stat(h.adminPort, 'http.h1.downstream_cx_total'), cx0 + 1);
    assert.equal(await stat(h.adminPort, 'http.h1.downstream_rq_total'), rq0 + 5);
  });

  it('a 5 MB chunked request body streams to the upstream and back intact', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const want = createHash('sha256').update(data).digest('hex');
    const res = await new Promise<{ status: number; hash: string; length: number }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: h.port(), path: '/echo/big', method: 'POST', agent: false },
        (res) => {
          const hash = createHash('sha256');
          let length = 0;
          res.on('data', (c: Buffer) => {
            hash.update(c);
            length += c.length;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, hash: hash.digest('hex'), length }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      // No content-length: Node sends chunked. Write in 64 KB pieces, honouring backpressure.
      let off = 0;
      const pump = () => {
        while (off < data.length) {
          const piece = data.subarray(off, off + 65536);
          off += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(res.status, 200);
    assert.equal(res.length, data.length);
    assert.equal(res.hash, want);
    const s = seen[seen.length - 1]!;
    assert.equal(s.url, '/echo/big');
    assert.equal(s.headers['transfer-encoding'], 'chunked');
    assert.equal(s.headers['content-length'], undefined);
  });

  it('a content-length request body arrives with its content-length', async () => {
    const r = await request(h.port(), {
      path: '/echo/cl',
      method: 'PUT',
      headers: { 'content-length': '11' },
      body: 'hello there',
    });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello there');
    assert.equal(seen[seen.length - 1]!.headers['content-length'], '11');
  });

  it('HEAD gets the headers and no body', async () => {
    const r = await request(h.port(), { path: '/head', method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.equal(r.headers['content-length'], '2');
  });

  it('Expect: 100-continue gets a 100 from the proxy, then the body is proxied', async () => {
    const r = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = http.request(
        {
          host: '127.0.0.1',
          port: h.port(),
          path: '/echo/expect',
          method: 'POST',
          agent: false,
          headers: { expect: '100-continue', 'content-length': '7' },
        },
        (res) => {
          let b = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, continued }));
        },
      );
      req.on('continue', () => {
        continued = true;
        req.end('payload');
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(r.continued, true);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'payload');
  });

  it('Expect: 100-continue is stripped before the upstream (proxy_100_continue is false)', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: h.port(),
          path: '/echo/expect2',
          method: 'POST',
          agent: false,
          headers: { expect: '100-continue', 'content-length': '2' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve());
        },
      );
      req.on('continue', () => req.end('hi'));
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(seen[seen.length - 1]!.url, '/echo/expect2');
    assert.equal(seen[seen.length - 1]!.headers.expect, undefined);
  });

  it('pipelined requests on one socket are answered in order', async () => {
    const reqs =
      'GET /delay/200/first HTTP/1.1\r\nHost: p\r\n\r\n' +
      'GET /delay/0/second HTTP/1.1\r\nHost: p\r\n\r\n' +
      'GET /delay/50/third HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n';
    const r = await rawExchange(h.port(), reqs, 5000);
    const text = r.data.toString();
    assert.equal(r.closed, true);
    assert.equal(text.match(/HTTP\/1\.1 200 /g)?.length, 3, text);
    assertInOrder(text, ['tag:first', 'tag:second', 'tag:third']);
  });

  it('pipelined requests followed by a half-close are all answered before the connection closes', async () => {
    // The first request is slow, so the others and the FIN arrive while it is in flight.
    const text = await rawTimeline(h.port(), [
      { atMs: 0, data: 'GET /delay/150/one HTTP/1.1\r\nHost: p\r\n\r\n' },
      {
        atMs: 30,
        data: 'GET /delay/0/two HTTP/1.1\r\nHost: p\r\n\r\nGET /delay/20/three HTTP/1.1\r\nHost: p\r\n\r\n',
        end: true,
      },
    ]);
    assert.equal(text.match(/HTTP\/1\.1 200 /g)?.length, 3, text);
    assertInOrder(text, ['tag:one', 'tag:two', 'tag:three']);
  });

  it('a request sent while the previous response is in flight is answered after it', async () => {
    // The second request is sent in two pieces while the first waits on its upstream.
    const r = await rawTimeline(h.port(), [
      { atMs: 0, data: 'GET /delay/120/slow HTTP/1.1\r\nHost: p\r\n\r\n' },
      { atMs: 20, data: 'POST /echo/late HTTP/1.1\r\nHost: p\r\nContent-Length: 9\r\n\r\nhello' },
      { atMs: 50, data: ' you' },
      { atMs: 70, data: 'GET /delay/0/last HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n' },
    ]);
    assert.equal(r.match(/HTTP\/1\.1 200 /g)?.length, 3, r);
    assertInOrder(r, ['tag:slow', 'hello you', 'tag:last']);
  });

  it('garbage on the socket gets 400 and the connection is closed', async () => {
    const before = (await stat(h.adminPort, 'http.h1.downstream_cx_protocol_error')) ?? 0;
    const r = await rawExchange(h.port(), 'THIS IS NOT HTTP AT ALL\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    assert.match(r.data.toString(), /^HTTP\/1\.1 400 /);
    assert.equal(await stat(h.adminPort, 'http.h1.downstream_cx_protocol_error'), before + 1);
  });

  it('an invalid header line gets 400', async () => {
    const r = await rawExchange(h.port(), 'GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n', 3000);
    assert.equal(r.closed, true);
    assert.match(r.data.toString(), /^HTTP\/1\.1 400 /);
  });

  it('request headers over 60 KB get 431 and the connection is closed', async () => {
    const big = 'a'.repeat(70 * 1024);
    const r = await rawExchange(h.port(), `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`, 3000);
    assert.equal(r.closed, true);
    assert.match(r.data.toString(), /^HTTP\/1\.1 431 /);
  });

  it('request headers just under the limit are accepted', async () => {
    const r = await request(h.port(), { path: '/fine', headers: { 'x-big': 'b'.repeat(50 * 1024) } });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
    assert.equal(seen[seen.length - 1]!.headers['x-big']?.length, 50 * 1024);
  });
});
