// How Herald's HTTP/1 codec ends a connection: after an error reply (400, 426, 431, 501) or a
// `connection: close` response it keeps reading (and discarding) so the client's FIN is seen and
// the socket released at once, and a client that never closes is cut off after the HCM's
// delayed_close_timeout (Envoy's default 1 s; 0 closes as soon as the reply is flushed).
// Checked from real sockets: the client sees the reply then 'close', the connection gauge returns
// to 0 and no socket on Herald's port is left in CLOSE-WAIT.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, startHerald, stat, staticCluster } from '../../helpers/harness.js';
import { parseResponses, type RawUpstream, startRawUpstream, waitFor } from '../../helpers/raw-http.js';

/** Rows of /proc/net/tcp{,6}: local port, remote port, state (hex), inode (0: no fd holds it). */
function tcpSockets(): { local: number; remote: number; state: string; inode: string }[] {
  const out: { local: number; remote: number; state: string; inode: string }[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (addr: string) => Number.parseInt(addr.slice(addr.lastIndexOf(':') + 1), 16);
      out.push({ local: port(f[1]!), remote: port(f[2]!), state: f[3]!, inode: f[9]! });
    }
  }
  return out;
}

/** Sockets in CLOSE-WAIT (state 08) on Herald's side of `port`. */
function closeWaitOn(port: number): number {
  return tcpSockets().filter((t) => t.local === port && t.state === '08').length;
}

/** Herald still holds (has an fd for) its end of the connection from client port `client`. */
function heraldHolds(port: number, client: number): boolean {
  return tcpSockets().some((t) => t.local === port && t.remote === client && t.inode !== '0');
}

interface Outcome {
  status: number;
  /**
   * ms from the first response byte until Herald released the connection (or -1): the client's
   * 'close' when it half-closed, else Herald's socket leaving /proc/net/tcp or losing its fd.
   */
  closedAfterMs: number;
  /** Herald sent its FIN (or reset). */
  ended: boolean;
}

/**
 * Sends `data` on a fresh connection and reads until one complete response. With `halfClose` the
 * client then half-closes and waits for 'close'; without, it never closes (its side stays open:
 * allowHalfOpen) and waits for Herald to release its end of the connection.
 */
function exchange(port: number, data: string, halfClose: boolean, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let firstByteAt = 0;
    let ended = false;
    let halfClosed = false; // (or, without halfClose, the response is complete)
    let poll: NodeJS.Timeout | undefined;
    const done = (closed: boolean) => {
      clearTimeout(t);
      clearInterval(poll);
      const r = parseResponses(Buffer.concat(chunks));
      resolve({
        status: r[0]?.status ?? 0,
        closedAfterMs: closed ? Date.now() - firstByteAt : -1,
        ended,
      });
      s.destroy();
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write(data));
    s.on('data', (c: Buffer) => {
      if (!firstByteAt) firstByteAt = Date.now();
      chunks.push(c);
      if (halfClosed || parseResponses(Buffer.concat(chunks)).length === 0) return;
      halfClosed = true;
      if (halfClose) s.end();
      else {
        const client = s.localPort!;
        poll = setInterval(() => {
          if (!heraldHolds(port, client)) done(true);
        }, 10);
      }
    });
    s.on('end', () => {
      ended = true;
    });
    s.on('error', () => {});
    s.on('close', () => done(true));
  });
}

const MALFORMED = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n';

describe('HTTP/1 delayed close', () => {
  let up: RawUpstream;
  let h: Running;
  let quick: Running;
  let immediate: Running;

  before(async () => {
    up = await startRawUpstream((req, s) => {
      const body = `${req.method} ${req.path}`;
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    });
    const boot = (hcmExtra: string) =>
      httpBootstrap({
        routes: '- match: { prefix: "/" }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
        hcmExtra,
      });
    h = await startHerald(boot(''));
    quick = await startHerald(
      boot('delayed_close_timeout: 0.2s\ncommon_http_protocol_options: { max_requests_per_connection: 1 }'),
    );
    immediate = await startHerald(boot('delayed_close_timeout: 0s'));
  });

  after(async () => {
    await h?.stop();
    await quick?.stop();
    await immediate?.stop();
    await up?.close();
  });

  it('50 malformed requests whose clients half-close leave no connection, fd or CLOSE-WAIT behind', async () => {
    const port = h.port();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => exchange(port, MALFORMED, true, 3000)),
    );
    for (const r of results) {
      assert.equal(r.status, 400);
      assert.ok(r.closedAfterMs >= 0, 'the connection must close once the client half-closed');
      // Well before the 1 s delayed close: the client's FIN is what closes it.
      assert.ok(r.closedAfterMs < 800, `closed after ${r.closedAfterMs} ms`);
    }
    await waitFor(() => closeWaitOn(port) === 0, 2000, 'no CLOSE-WAIT sockets on the listener port');
    let active: number | undefined;
    const deadline = Date.now() + 2000;
    do {
      active = await stat(h.adminPort, 'http.test.downstream_cx_active');
      if (active === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    } while (Date.now() < deadline);
    assert.equal(active, 0, 'http.test.downstream_cx_active');
    assert.equal(up.requests.length, 0, 'no malformed request reaches the upstream');
  });

  it('a client that never closes after a 400 is closed after delayed_close_timeout (default 1 s)', async () => {
    const r = await exchange(h.port(), MALFORMED, false, 4000);
    assert.equal(r.status, 400);
    assert.equal(r.ended, true);
    assert.ok(r.closedAfterMs >= 800 && r.closedAfterMs < 2500, `closed after ${r.closedAfterMs} ms`);
  });

  it('delayed_close_timeout is read from the HCM; 0 closes as soon as the reply is flushed', async () => {
    const short = await exchange(quick.port(), MALFORMED, false, 4000);
    assert.equal(short.status, 400);
    assert.ok(
      short.closedAfterMs >= 100 && short.closedAfterMs < 800,
      `closed after ${short.closedAfterMs} ms`,
    );
    const now = await exchange(immediate.port(), MALFORMED, false, 4000);
    assert.equal(now.status, 400);
    assert.ok(now.closedAfterMs >= 0 && now.closedAfterMs < 150, `closed after ${now.closedAfterMs} ms`);
  });

  it('426, 431 and 501 replies close the same way', async () => {
    for (const [req, status] of [
      ['GET / HTTP/1.0\r\n\r\n', 426],
      [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`, 431],
      ['POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ] as const) {
      const half = await exchange(h.port(), req, true, 3000);
      assert.equal(half.status, status);
      assert.ok(half.closedAfterMs >= 0 && half.closedAfterMs < 800, `${status}: ${half.closedAfterMs} ms`);
      const never = await exchange(quick.port(), req, false, 3000);
      assert.equal(never.status, status);
      assert.ok(
        never.closedAfterMs >= 100 && never.closedAfterMs < 800,
        `${status}: ${never.closedAfterMs} ms`,
      );
    }
    await waitFor(() => closeWaitOn(h.port()) === 0, 2000, 'no CLOSE-WAIT sockets');
  });

  it('a `connection: close` response: closed at the client FIN, or after the delay if it never comes', async () => {
    const req = 'GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const half = await exchange(h.port(), req, true, 3000);
    assert.equal(half.status, 200);
    assert.ok(half.closedAfterMs >= 0 && half.closedAfterMs < 800, `closed after ${half.closedAfterMs} ms`);
    const never = await exchange(h.port(), req, false, 4000);
    assert.equal(never.status, 200);
    assert.equal(never.ended, true, 'Herald ends its side after the response');
    assert.ok(
      never.closedAfterMs >= 800 && never.closedAfterMs < 2500,
      `closed after ${never.closedAfterMs} ms`,
    );
    await waitFor(() => closeWaitOn(h.port()) === 0, 2000, 'no CLOSE-WAIT sockets');
  });

  it('max_requests_per_connection (draining): the last response closes after the delay', async () => {
    const r = await exchange(quick.port(), 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n', false, 3000);
    assert.equal(r.status, 200);
    assert.ok(r.closedAfterMs >= 100 && r.closedAfterMs < 800, `closed after ${r.closedAfterMs} ms`);
  });

  it('a pipelined request after a `connection: close` one is not answered', async () => {
    const n = up.requests.length;
    const r = await exchange(
      quick.port(),
      'GET /c1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /c2 HTTP/1.1\r\nHost: x\r\n\r\n',
      false,
      3000,
    );
    assert.equal(r.status, 200);
    assert.ok(r.closedAfterMs >= 0 && r.closedAfterMs < 800, `closed after ${r.closedAfterMs} ms`);
    assert.deepEqual(
      up.requests.slice(n).map((q) => q.path),
      ['/c1'],
    );
  });
});
