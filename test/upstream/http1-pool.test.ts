// Herald's upstream HTTP/1.1 connection pool over real sockets: raw `net`
// upstreams record every connection and request, so reuse, retirement
// (max_requests_per_connection, idle_timeout, FIN, connection: close) and
// failures (reset, protocol errors) can be seen on the wire and in the stats.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  cluster,
  HTTP_PROTOCOL_OPTIONS_TYPE,
  httpConfig,
  type Obj,
  rawExchange,
  sleep,
} from '../helpers/data-path.js';
import { type Reply, type Running, request, startHerald, stat } from '../helpers/harness.js';
import {
  parseResponses,
  type RawUpstream,
  response,
  startRawUpstream,
  waitFor,
  withTimeout,
} from '../helpers/raw-http.js';

const RESET = 'upstream connect error or disconnect/reset before headers. reset reason: ';

function protocolOptions(common: Obj): Obj {
  return {
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': HTTP_PROTOCOL_OPTIONS_TYPE,
        explicit_http_config: { http_protocol_options: {} },
        common_http_protocol_options: common,
      },
    },
  };
}

describe('upstream HTTP/1.1 pool', () => {
  const ups: Record<string, RawUpstream> = {};
  const timers = new Set<NodeJS.Timeout>();
  let h: Running;
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  before(async () => {
    const ok = () => startRawUpstream((req, s) => s.write(response(200, `ok:${req.path}`)));
    ups.reuse = await ok();
    ups.maxreq = await ok();
    ups.idle = await ok();
    ups.pipe = await ok();
    // Answers, then closes the idle keep-alive connection 100 ms later.
    ups.fin = await startRawUpstream((req, s) => {
      s.write(response(200, `fin:${req.path}`));
      later(100, () => s.end());
    });
    // Says connection: close but leaves the socket open: only the proxy can retire it.
    ups.connclose = await startRawUpstream((req, s) =>
      s.write(response(200, `cc:${req.path}`, ['Connection: close'])),
    );
    // No content-length: the body ends when the upstream closes.
    ups.untilclose = await startRawUpstream((_req, s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
      for (let i = 0; i < 100; i++) s.write(`${String(i).padStart(4, '0')}:${'x'.repeat(995)}\n`);
      later(20, () => s.end('the end'));
    });
    // Answers the first request on a connection; resets on the second without a byte.
    ups.reset = await startRawUpstream((req, s) => {
      if (req.index === 0) s.write(response(200, 'first'));
      else s.destroy();
    });
    ups.badstatus = await startRawUpstream((_req, s) =>
      s.write('HTTP/1.1 OK-ish nope\r\nContent-Length: 0\r\n\r\n'),
    );
    // HEAD gets content-length: 5 and no body; GET gets the 5 bytes.
    ups.head = await startRawUpstream((req, s) =>
      s.write(
        req.method === 'HEAD' ? 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n' : response(200, 'hello'),
      ),
    );
    // 100 Continue first, the final response 20 ms later.
    ups.cont = await startRawUpstream((_req, s) => {
      s.write('HTTP/1.1 100 Continue\r\n\r\n');
      later(20, () => s.write(response(200, 'done')));
    });

    const names = Object.keys(ups);
    const extra: Record<string, Obj> = {
      maxreq: protocolOptions({ max_requests_per_connection: 2 }),
      idle: protocolOptions({ idle_timeout: '0.2s' }),
    };
    h = await startHerald(
      httpConfig({
        hcmExtra: { stat_prefix: 'pool' },
        routes: names.map((n) => ({ match: { prefix: `/${n}` }, route: { cluster: n } })),
        clusters: names.map((n) => cluster(n, [ups[n]!.port], extra[n] ?? {})),
      }),
    );
  });

  after(async () => {
    for (const t of timers) clearTimeout(t);
    await h?.stop();
    for (const u of Object.values(ups)) await u.close();
  });

  const cx = (name: string, s: string) => stat(h.adminPort, `cluster.${name}.${s}`);
  const get = (path: string, method = 'GET'): Promise<Reply> =>
    withTimeout(request(h.port(), { path, method }), 5000, `${method} ${path}`);

  it('keep-alive: 10 sequential requests share one upstream connection', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await get(`/reuse/${i}`);
      assert.equal(r.status, 200);
      assert.equal(r.body, `ok:/reuse/${i}`);
    }
    assert.equal(ups.reuse!.conns.length, 1);
    assert.deepEqual(
      ups.reuse!.requests.map((r) => [r.conn, r.index]),
      Array.from({ length: 10 }, (_, i) => [0, i]),
    );
    assert.equal(ups.reuse!.conns[0]!.closed, false);
    assert.equal(await cx('reuse', 'upstream_cx_total'), 1);
    assert.equal(await cx('reuse', 'upstream_cx_active'), 1);
  });

  it('max_requests_per_connection: 2 -> 6 requests use 3 connections; the 2nd on each says connection: close', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await get(`/maxreq/${i}`);
      assert.equal(r.status, 200);
      assert.equal(r.body, `ok:/maxreq/${i}`);
    }
    const u = ups.maxreq!;
    assert.equal(u.conns.length, 3);
    assert.deepEqual(
      u.requests.map((r) => [r.conn, r.index]),
      [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
        [2, 0],
        [2, 1],
      ],
    );
    for (const r of u.requests) {
      if (r.index === 1) assert.equal(r.headers.connection, 'close', r.head);
      else assert.notEqual(r.headers.connection, 'close', r.head);
    }
    // Herald retires each connection after its 2nd response.
    await waitFor(() => u.conns.every((c) => c.ended || c.closed), 2000, 'all 3 connections to close');
    assert.equal(await cx('maxreq', 'upstream_cx_total'), 3);
  });

  it('idle_timeout: 0.2s closes a pooled connection after 200 ms idle', async () => {
    const r = await get('/idle/1');
    assert.equal(r.status, 200);
    const u = ups.idle!;
    assert.equal(u.conns.length, 1);
    await sleep(100);
    assert.equal(u.conns[0]!.ended || u.conns[0]!.closed, false, 'closed before the idle timeout');
    await sleep(300);
    assert.equal(u.conns[0]!.ended || u.conns[0]!.closed, true, 'still open 400 ms after the request');
    assert.equal(await cx('idle', 'upstream_cx_idle_timeout'), 1);
    assert.equal(await cx('idle', 'upstream_cx_active'), 0);
    // The next request gets a new connection and works.
    const r2 = await get('/idle/2');
    assert.equal(r2.status, 200);
    assert.equal(u.conns.length, 2);
  });

  it('an upstream FIN on an idle connection retires it: the next request succeeds on a new one', async () => {
    const u = ups.fin!;
    const r1 = await get('/fin/1');
    assert.equal(r1.status, 200);
    await sleep(300);
    assert.equal(u.conns[0]!.closed, true, 'the upstream closed its first connection');
    const r2 = await get('/fin/2');
    assert.equal(r2.status, 200);
    assert.equal(r2.body, 'fin:/fin/2');
    assert.equal(u.conns.length, 2);
    assert.deepEqual(
      u.requests.map((r) => [r.conn, r.index]),
      [
        [0, 0],
        [1, 0],
      ],
    );
    assert.equal((await cx('fin', 'upstream_cx_destroy_remote_with_active_rq')) ?? 0, 0);
  });

  it('a response with connection: close retires the connection: the next request opens a new one', async () => {
    const u = ups.connclose!;
    const r1 = await get('/connclose/1');
    assert.equal(r1.status, 200);
    assert.equal(r1.body, 'cc:/connclose/1');
    // Herald closes it (the upstream left it open).
    await waitFor(
      () => u.conns[0]!.ended || u.conns[0]!.closed,
      2000,
      'Herald to close the first connection',
    );
    const r2 = await get('/connclose/2');
    assert.equal(r2.status, 200);
    assert.equal(r2.body, 'cc:/connclose/2');
    assert.equal(u.conns.length, 2);
    assert.equal(u.conns[0]!.requests, 1);
    assert.equal(await cx('connclose', 'upstream_cx_total'), 2);
  });

  it('a response without content-length is read until the upstream closes; the client gets all of it', async () => {
    let want = '';
    for (let i = 0; i < 100; i++) want += `${String(i).padStart(4, '0')}:${'x'.repeat(995)}\n`;
    want += 'the end';
    const r = await get('/untilclose');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, want.length);
    assert.equal(r.body, want);
    assert.equal(r.headers['content-type'], 'text/plain');
    // Once more: the closed connection is not reused.
    const r2 = await get('/untilclose');
    assert.equal(r2.body, want);
    assert.equal(ups.untilclose!.conns.length, 2);
  });

  it('a reset on a reused connection before any response byte -> 503 connection termination', async () => {
    const u = ups.reset!;
    const r1 = await get('/reset/1');
    assert.equal(r1.status, 200);
    assert.equal(r1.body, 'first');
    const r2 = await get('/reset/2');
    // It really was the reused connection.
    assert.deepEqual(
      u.requests.map((r) => [r.conn, r.index]),
      [
        [0, 0],
        [0, 1],
      ],
    );
    assert.equal(r2.status, 503);
    assert.match(r2.body, /reset reason: connection termination/);
    assert.ok(r2.body.startsWith(RESET), r2.body);
    assert.equal(await cx('reset', 'upstream_cx_destroy_remote_with_active_rq'), 1);
    // The pool recovers: a new connection serves the next request.
    const r3 = await get('/reset/3');
    assert.equal(r3.status, 200);
    assert.equal(u.conns.length, 2);
  });

  it('a malformed upstream status line -> 502 protocol error', async () => {
    const r = await get('/badstatus');
    assert.equal(r.status, 502);
    assert.match(r.body, /reset reason: protocol error/);
    assert.equal(await cx('badstatus', 'upstream_rq_502'), 1);
    // The connection is not reused after a protocol error.
    await waitFor(() => ups.badstatus!.conns[0]!.closed, 2000, 'Herald to close the broken connection');
  });

  it('HEAD: content-length: 5 and no body is a complete response, and the connection is reused', async () => {
    const r = await get('/head/a', 'HEAD');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], '5');
    assert.equal(r.body, '');
    const r2 = await get('/head/b');
    assert.equal(r2.status, 200);
    assert.equal(r2.body, 'hello');
    const u = ups.head!;
    assert.deepEqual(
      u.requests.map((r) => [r.method, r.conn, r.index]),
      [
        ['HEAD', 0, 0],
        ['GET', 0, 1],
      ],
    );
    // The same through a raw client: exactly a header block, no stray body bytes.
    const raw = await rawExchange(
      h.port(),
      'HEAD /head/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3000,
    );
    assert.equal(raw.closed, true);
    const text = raw.data.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\ncontent-length: 5\r\n/i);
    assert.ok(text.endsWith('\r\n\r\n'), JSON.stringify(text));
    assert.equal(u.conns.length, 1);
  });

  it('a 100 Continue from the upstream is swallowed; the client gets the final 200', async () => {
    for (const path of ['/cont/1', '/cont/2']) {
      const raw = await rawExchange(
        h.port(),
        `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        3000,
      );
      assert.equal(raw.closed, true);
      assert.doesNotMatch(raw.data.toString('latin1'), /100 Continue/i);
      const rs = parseResponses(raw.data);
      assert.deepEqual(
        rs.map((r) => [r.status, r.body]),
        [[200, 'done']],
      );
    }
    // The interim response did not desynchronise the connection: it was reused.
    assert.deepEqual(
      ups.cont!.requests.map((r) => [r.conn, r.index]),
      [
        [0, 0],
        [0, 1],
      ],
    );
  });

  it('pipelined downstream requests reuse the pooled upstream connection', async () => {
    const u = ups.pipe!;
    const raw = await rawExchange(
      h.port(),
      'GET /pipe/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /pipe/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /pipe/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3000,
    );
    assert.equal(raw.closed, true);
    assert.deepEqual(
      parseResponses(raw.data).map((r) => r.body),
      ['ok:/pipe/1', 'ok:/pipe/2', 'ok:/pipe/3'],
    );
    assert.equal(u.conns.length, 1, `${u.conns.length} upstream connections for 3 sequential requests`);
  });
});
