// Robustness under untrusted traffic: whatever a client or an upstream sends,
// Herald must answer with a status or close the connection, never crash or
// wedge, and keep serving everyone else. Seeded fuzzing of HTTP/1 requests and
// upstream responses, HTTP/2 abuse, slowloris, and body backpressure; plus
// targeted reproductions of the defects the fuzzing and review found.
// Scenarios that crash the process run Herald in a child
// process, so a crash fails one test instead of the whole run.
//
// ROBUSTNESS_SEED=<n> replays the fuzzing with another seed.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  closeH2,
  cluster,
  H2_UPSTREAM,
  h2Connect,
  h2Request,
  httpConfig,
  type Obj,
  rawExchange,
  sleep,
} from '../helpers/data-path.js';
import {
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  type Upstream,
} from '../helpers/harness.js';
import { type RawUpstream, response, startRawUpstream, waitFor, withTimeout } from '../helpers/raw-http.js';

const SEED = Number(process.env.ROBUSTNESS_SEED ?? 0x5eed);
const CHILD = process.env.HERALD_ROBUSTNESS_CHILD;

// ---------------------------------------------------------------------------
// Seeded pseudo-random numbers (mulberry32): failures reproduce with the seed.

class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Random string over `alphabet`. */
  str(alphabet: string, len: number): string {
    let s = '';
    for (let i = 0; i < len; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

const latin1 = (s: string) => Buffer.from(s, 'latin1');

/** A control character in a request line (DEL included). */
function hasCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) return true;
  }
  return false;
}

/** A byte Envoy's codec (Balsa, InvalidCharsLevel::kError) rejects in a header line: 0x00-0x1F but HTAB. */
function hasHeaderCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 && c !== 9) return true;
  }
  return false;
}

/** An HTTP/2 frame: 9-byte header + payload. */
function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(9);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  return Buffer.concat([b, payload]);
}

/** HPACK literal without indexing, name from the static table (short values only). */
function hpackLiteral(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([nameIndex, value.length]), latin1(value)]);
}

// ---------------------------------------------------------------------------
// Mutated HTTP/1.1 requests.

interface ReqCase {
  index: number;
  kind: string;
  bytes: Buffer;
  /** Half-close after writing: for inputs that may be incomplete (Herald may rightly wait for more). */
  fin: boolean;
  /** Written in this many pieces, to exercise incremental parsing. */
  pieces: number;
}

const REQ_TEMPLATES = [
  'GET /fz/a?q=1 HTTP/1.1\r\nHost: fuzz\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n',
  'POST /fz/upload HTTP/1.1\r\nHost: fuzz\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  'POST /fz/chunked HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
];
const NASTY = 'aZ09-_.:;, \t\r\n\0\x01\x7f\xff"(){}/\\@';
const TOKEN_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&*+.^`|~';

function genRequest(r: Rng, index: number): ReqCase {
  const t = r.pick(REQ_TEMPLATES);
  const head = t.slice(0, t.indexOf('\r\n\r\n'));
  const body = t.slice(t.indexOf('\r\n\r\n') + 4);
  const [requestLine, ...headerLines] = head.split('\r\n');
  const c = (kind: string, s: string | Buffer, fin: boolean): ReqCase => ({
    index,
    kind,
    bytes: typeof s === 'string' ? latin1(s) : s,
    fin,
    pieces: r.range(1, 3),
  });
  switch (r.int(12)) {
    case 0: {
      const b = latin1(t);
      for (let n = r.range(1, 4); n > 0; n--) b[r.int(b.length)] = r.int(256);
      return c('byte-flip', b, true);
    }
    case 1:
      return c('truncated', t.slice(0, r.int(t.length)), true);
    case 2: {
      // One header whose name or value carries CR, LF, NUL or other bytes.
      const name = r.chance(0.5) ? r.str(NASTY, r.range(1, 12)) : r.str(TOKEN_CHARS, r.range(1, 12));
      const value = r.str(NASTY, r.range(0, 30));
      const at = r.int(headerLines.length + 1);
      const lines = [...headerLines];
      lines.splice(at, 0, `${name}: ${value}`);
      return c('ctl-header', `${[requestLine, ...lines].join('\r\n')}\r\n\r\n${body}`, true);
    }
    case 3: {
      const lines = [...headerLines];
      for (let n = r.range(1, 20); n > 0; n--)
        lines.push(
          `${r.str(TOKEN_CHARS + NASTY, r.range(1, 20))}:${r.str(NASTY + TOKEN_CHARS, r.range(0, 60))}`,
        );
      return c('random-headers', `${[requestLine, ...lines].join('\r\n')}\r\n\r\n${body}`, true);
    }
    case 4: {
      const size = r.pick([
        'ffffffffff',
        '-1',
        '1'.repeat(40),
        'fffffffff',
        '0x10',
        '7fffffff',
        ' 5',
        '5 ;x',
      ]);
      return c(
        'huge-chunk',
        `POST /fz/chunk HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\nhello\r\n0\r\n\r\n`,
        true,
      );
    }
    case 5: {
      const cl = r.pick([
        '-1',
        '-0',
        '99999999999999999999',
        '18446744073709551616',
        '1e3',
        '0x10',
        '+5',
        '',
        'abc',
        '5, 6',
        '5\t',
        '4294967296',
      ]);
      return c(
        'content-length',
        `POST /fz/cl HTTP/1.1\r\nHost: fuzz\r\nContent-Length: ${cl}\r\n\r\nhello`,
        true,
      );
    }
    case 6:
      // A complete message with bare LF line endings: Herald must answer or close, not wait.
      return c('bare-lf', t.replace(/\r\n/g, '\n'), false);
    case 7: {
      const lines = t.split('\r\n');
      return c(
        'mixed-lf',
        lines.map((l, i) => l + (i === lines.length - 1 ? '' : r.pick(['\r\n', '\n']))).join(''),
        true,
      );
    }
    case 8: {
      const target = r.pick([
        'http://fuzz/fz/abs',
        'https://example.com:443/fz/abs?x',
        'http://user:pw@fuzz:80/fz',
        '*',
        'fuzz:80',
        '//fz//double',
        'fz/relative',
      ]);
      const method = target === 'fuzz:80' ? 'CONNECT' : r.pick(['GET', 'OPTIONS', 'HEAD']);
      return c('target-form', `${method} ${target} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, false);
    }
    case 9: {
      const path = `/${r.str('abcdefgh/%', r.range(61, 200) * 1024)}`;
      return c('long-line', `GET ${path} HTTP/1.1\r\nHost: fuzz\r\n\r\n`, false);
    }
    case 10: {
      const method = r.pick(['G ET', 'GET\t', '', 'GE(T', r.str(NASTY, 5), 'get', 'X'.repeat(5000)]);
      const version = r.pick([
        'HTTP/1.1',
        'HTTP/1.2',
        'HTTP/2.0',
        'http/1.1',
        'HTTP/1.1 ',
        'HTTP/1',
        'HTTP/1.10',
      ]);
      return c('request-line', `${method} /fz/rl ${version}\r\nHost: fuzz\r\n\r\n`, false);
    }
    default: {
      const ctl = r.pick(['\n', '\0', '\x01', '\x7f', '\r', '\nX-Injected:1', '\x1b[2J']);
      return c('ctl-target', `GET /fz/${ctl}x HTTP/1.1\r\nHost: fuzz\r\n\r\n`, false);
    }
  }
}

type ReqOutcome =
  | { kind: 'status'; status: number }
  | { kind: 'closed' }
  | { kind: 'hang' }
  | { kind: 'garbage' };

/** Sends one case on its own connection; resolves with the first status line, a close, or 'hang'. */
function sendCase(port: number, c: ReqCase, waitMs: number): Promise<ReqOutcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const s = net.connect({ port, host: '127.0.0.1' });
    const finish = (o: ReqOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const classify = (): ReqOutcome | undefined => {
      const buf = Buffer.concat(chunks);
      const eol = buf.indexOf('\r\n');
      if (eol < 0)
        return buf.length >= 12 && !buf.toString('latin1').startsWith('HTTP/')
          ? { kind: 'garbage' }
          : undefined;
      const m = /^HTTP\/1\.1 ([1-5]\d\d) /.exec(buf.toString('latin1', 0, eol + 2));
      return m ? { kind: 'status', status: Number(m[1]) } : { kind: 'garbage' };
    };
    const timer = setTimeout(() => finish({ kind: 'hang' }), waitMs);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      const o = classify();
      if (o) finish(o);
    });
    s.on('close', () => finish(classify() ?? { kind: 'closed' }));
    s.on('error', () => {});
    s.on('connect', async () => {
      const n = c.pieces;
      const step = Math.ceil(c.bytes.length / n) || 1;
      for (let off = 0; off < c.bytes.length; off += step) {
        if (s.destroyed) return;
        s.write(c.bytes.subarray(off, off + step));
        if (off + step < c.bytes.length) await sleep(2);
      }
      if (c.fin && !s.destroyed) s.end();
    });
  });
}

function describeCase(c: ReqCase, o: ReqOutcome): string {
  const preview = JSON.stringify(c.bytes.toString('latin1').slice(0, 90));
  return `seed=${SEED} #${c.index} ${c.kind} fin=${c.fin} -> ${o.kind}${o.kind === 'status' ? ` ${o.status}` : ''} ${preview}`;
}

// ---------------------------------------------------------------------------
// Mutated upstream responses.

interface UpCase {
  index: number;
  kind: string;
  bytes: Buffer;
  /** What the upstream does after writing. */
  after: 'close' | 'destroy' | 'keep';
}

const RESP_TEMPLATES = [
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n',
];

function genUpstream(r: Rng, index: number): UpCase {
  const after = r.pick(['close', 'destroy', 'keep'] as const);
  const c = (kind: string, s: string | Buffer, a = after): UpCase => ({
    index,
    kind,
    bytes: typeof s === 'string' ? latin1(s) : s,
    after: a,
  });
  const t = r.pick(RESP_TEMPLATES);
  switch (r.int(14)) {
    case 0: {
      const line = r.pick([
        'HTTP/1.1 2000 OK',
        'HTTP/1.1 abc OK',
        'HTTP/2.0 200 OK',
        'HTTP/1.1 099 Low',
        'ICY 200 OK',
        'HTTP/1.1',
        '',
        'HTTP/1.1 200 OK\0',
        'http/1.1 200 ok',
        ' HTTP/1.1 200 OK',
      ]);
      return c('status-line', `${line}\r\nContent-Length: 2\r\n\r\nok`);
    }
    case 1: {
      const [declared, actual] = r.pick([
        [100, 10],
        [10, 100],
        [1, 0],
        [0, 5],
        [1_000_000, 3],
      ] as const);
      return c('wrong-length', `HTTP/1.1 200 OK\r\nContent-Length: ${declared}\r\n\r\n${'x'.repeat(actual)}`);
    }
    case 2: {
      const cl = r.pick(['-1', 'abc', '1e2', '99999999999999999999', '5, 6', '0x5', '']);
      return c('bad-length', `HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\n\r\nhello`);
    }
    case 3: {
      const full = RESP_TEMPLATES[1]!;
      const headEnd = full.indexOf('\r\n\r\n') + 4;
      // Cut inside the chunked body; the upstream then closes, resets or goes quiet.
      return c('truncated-chunked', full.slice(0, r.range(headEnd, full.length - 1)));
    }
    case 4: {
      const bad = r.pick([
        'zz\r\nhello\r\n0\r\n\r\n',
        '-5\r\nhello\r\n0\r\n\r\n',
        'ffffffffff\r\nhello\r\n0\r\n\r\n',
        '5\r\nhelloXX0\r\n\r\n',
        '5\nhello\n0\n\n',
      ]);
      return c('bad-chunk', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${bad}`);
    }
    case 5: {
      const junk = r.pick([
        'garbage',
        '\r\n\r\n',
        'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil',
        r.str(NASTY, 200),
      ]);
      return c('garbage-after', t + junk);
    }
    case 6: {
      const n = r.pick([101, 201, 2000, 5000]);
      let s = 'HTTP/1.1 200 OK\r\n';
      for (let i = 0; i < n; i++) s += `x-h${i}: ${'v'.repeat(10)}\r\n`;
      return c('many-headers', `${s}Content-Length: 2\r\n\r\nok`);
    }
    case 7:
      return c(
        'huge-header',
        `HTTP/1.1 200 OK\r\nx-big: ${'b'.repeat(r.range(90, 300) * 1024)}\r\nContent-Length: 2\r\n\r\nok`,
      );
    case 8: {
      const line = r.pick([
        'X-A: a\0b',
        'X-A: a\rb',
        'Bad Name: v',
        ': empty',
        'X-A a',
        ' folded: v',
        'X\x7f: v',
      ]);
      return c('bad-header', `HTTP/1.1 200 OK\r\n${line}\r\nContent-Length: 2\r\n\r\nok`);
    }
    case 9: {
      const b = latin1(t);
      for (let n = r.range(1, 3); n > 0; n--) b[r.int(b.length)] = r.int(256);
      return c('byte-flip', b);
    }
    case 10:
      return c('truncated', t.slice(0, r.int(t.length)), r.pick(['close', 'destroy'] as const));
    case 11:
      return c('no-response', '', after);
    case 12: {
      const n = r.pick([1, 50, 1000]);
      return c('1xx-storm', `${'HTTP/1.1 100 Continue\r\n\r\n'.repeat(n)}${RESP_TEMPLATES[0]}`);
    }
    default: {
      const v = r.pick([
        'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
        'HTTP/1.1 200 OK\r\n\r\nbody-until-close',
        'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello',
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw',
        'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok',
      ]);
      return c('framing', v);
    }
  }
}

/** Status of the final response at the start of `buf`, and whether its body is complete. */
function scanResponse(buf: Buffer): { status?: number; complete: boolean; garbage: boolean } {
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) {
      const garbage = buf.length - off >= 12 && !buf.toString('latin1', off, off + 5).startsWith('HTTP/');
      return { complete: false, garbage };
    }
    const head = buf.toString('latin1', off, end);
    const m = /^HTTP\/1\.1 ([1-5]\d\d) /.exec(head);
    if (!m) return { complete: false, garbage: true };
    const status = Number(m[1]);
    off = end + 4;
    if (status >= 100 && status < 200 && status !== 101) continue;
    if (status === 204 || status === 304 || status === 101) return { status, complete: true, garbage: false };
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (cl) return { status, complete: buf.length - off >= Number(cl[1]), garbage: false };
    if (/\r\ntransfer-encoding: *chunked/i.test(head))
      return { status, complete: chunkedDone(buf, off), garbage: false };
    return { status, complete: false, garbage: false };
  }
}

function chunkedDone(buf: Buffer, off: number): boolean {
  for (;;) {
    const eol = buf.indexOf('\r\n', off);
    if (eol < 0) return false;
    const size = Number.parseInt(buf.toString('latin1', off, eol), 16);
    if (Number.isNaN(size)) return false;
    off = eol + 2;
    if (size === 0) return buf.indexOf('\r\n\r\n', off - 2) >= 0;
    off += size + 2;
    if (off > buf.length) return false;
  }
}

type UpOutcome =
  | { kind: 'response'; status: number; complete: boolean; closed: boolean }
  | { kind: 'closed' }
  | { kind: 'hang'; status?: number }
  | { kind: 'garbage' };

/** GET /fuzzup/<i>: waits for a complete response or a close (a status then a close is a reset response). */
function fetchUpCase(port: number, index: number, waitMs: number): Promise<UpOutcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const s = net.connect({ port, host: '127.0.0.1' });
    const finish = (o: UpOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => {
      const st = scanResponse(Buffer.concat(chunks));
      finish({ kind: 'hang', status: st.status });
    }, waitMs);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      const st = scanResponse(Buffer.concat(chunks));
      if (st.garbage) finish({ kind: 'garbage' });
      else if (st.status !== undefined && st.complete)
        finish({ kind: 'response', status: st.status, complete: true, closed: false });
    });
    s.on('close', () => {
      const st = scanResponse(Buffer.concat(chunks));
      if (st.garbage) finish({ kind: 'garbage' });
      else if (st.status !== undefined)
        finish({ kind: 'response', status: st.status, complete: st.complete, closed: true });
      else finish({ kind: 'closed' });
    });
    s.on('error', () => {});
    s.on('connect', () => s.write(`GET /fuzzup/${index} HTTP/1.1\r\nHost: fuzz\r\n\r\n`));
  });
}

// ---------------------------------------------------------------------------
// Small helpers.

/** An upstream that answers every request as soon as its head arrives (then closes), recording each head. */
async function startHeadRecorder(): Promise<{ port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let answered = false;
    s.on('data', (c: Buffer) => {
      if (answered) return;
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      answered = true;
      heads.push(buf.toString('latin1', 0, end));
      s.end(response(200, 'recorded', ['Connection: close']));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    heads,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

async function healthy(port: number, what: string): Promise<void> {
  const r = await withTimeout(request(port, { path: '/healthy' }), 3000, `a normal request ${what}`);
  assert.equal(r.status, 200, `a normal request ${what}`);
}

/** Polls a stat until it equals `want`; fails with the last value seen. */
async function statSettles(adminPort: number, name: string, want: number, timeoutMs: number): Promise<void> {
  let last: number | undefined;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    last = (await stat(adminPort, name)) ?? 0;
    if (last === want) return;
    if (Date.now() > deadline) assert.fail(`${name} is ${last}, expected ${want} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** "200×12 400×40 closed×3" */
function summarize(xs: string[]): string {
  const counts = new Map<string, number>();
  for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k}×${n}`).join(' ');
}

async function inBatches<T, R>(
  items: T[],
  size: number,
  fn: (x: T) => Promise<R>,
  between: () => Promise<void>,
) {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
    await between();
  }
  return out;
}

// ---------------------------------------------------------------------------
// Child mode: Herald in a process of its own, for inputs that crash it.

async function childMain(): Promise<void> {
  const h2up = http2.createServer();
  h2up.on('stream', (s) => {
    s.on('error', () => {});
    s.resume();
    s.respond({ ':status': 200 });
    s.end('h2ok');
  });
  await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
  const raw = await startRawUpstream((req, sock) => {
    if (req.path === '/dup-content-type')
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Type: b\r\nContent-Length: 2\r\n\r\nok');
    else if (req.path === '/connection-trailer')
      sock.write(
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nConnection: x\r\n\r\n',
      );
    else sock.write(response(200, 'ok'));
  });
  const h = await startHerald(
    httpConfig({
      routes: [
        { match: { prefix: '/h2' }, route: { cluster: 'h2' } },
        { match: { prefix: '/' }, route: { cluster: 'raw' } },
      ],
      clusters: [
        cluster('h2', [(h2up.address() as net.AddressInfo).port], H2_UPSTREAM),
        cluster('raw', [raw.port]),
      ],
    }),
  );
  process.stdout.write(`${JSON.stringify({ port: h.port() })}\n`);
}

interface ChildRun {
  alive: boolean;
  statusAfter: number;
  stderr: string;
}

/** Starts a child Herald, runs `trigger` against it, then reports whether it survived and still serves. */
async function inChild(trigger: (port: number) => Promise<unknown>): Promise<ChildRun> {
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
    env: { ...process.env, HERALD_ROBUSTNESS_CHILD: 'serve' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await waitFor(() => stdout.includes('\n') || child.exitCode !== null, 15000, 'the child Herald to start');
    const port = (JSON.parse(stdout.split('\n')[0]!) as { port: number }).port;
    await withTimeout(
      Promise.resolve(trigger(port)).catch(() => {}),
      3000,
      'the trigger',
    ).catch(() => {});
    await sleep(300);
    const alive = child.exitCode === null && child.signalCode === null;
    let statusAfter = 0;
    if (alive)
      statusAfter = (await withTimeout(request(port, { path: '/ok' }), 3000, 'a request after')).status;
    return { alive, statusAfter, stderr: stderr.split('\n').slice(0, 6).join('\n') };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}

interface SniffRun {
  closed: boolean;
  timersBefore: number;
  timersAfter: number;
}

/**
 * Child mode 'sniff': a client sends part of the HTTP/2 preface and a FIN. Reports whether Herald
 * closed the connection, and Herald's ref'd timers before and after (run in a child because a
 * leaked ref'd timer would keep the test process from exiting).
 */
async function childSniff(): Promise<void> {
  const h = await startHerald(
    httpConfig({
      routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'ok' } } }],
    }),
  );
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  await sleep(100);
  const timersBefore = timers();
  const closed = await new Promise<boolean>((resolve) => {
    const s = net.connect({ port: h.port(), host: '127.0.0.1', allowHalfOpen: true });
    const finish = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => finish(false), 3000);
    s.on('error', () => {});
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.end('PRI * HTTP');
  });
  await sleep(200);
  const run: SniffRun = { closed, timersBefore, timersAfter: timers() };
  process.stdout.write(`${JSON.stringify(run)}\n`, () => process.exit(0));
}

let sniffRun: Promise<SniffRun> | undefined;
function runSniffChild(): Promise<SniffRun> {
  sniffRun ??= new Promise<SniffRun>((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, HERALD_ROBUSTNESS_CHILD: 'sniff' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.once('exit', () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(stdout.split('\n')[0]!) as SniffRun);
      } catch {
        reject(new Error(`the sniff child failed: ${stderr.slice(0, 500)}`));
      }
    });
  });
  return sniffRun;
}

function h2Get(port: number, path: string): Promise<unknown> {
  return (async () => {
    const s = await h2Connect(port);
    s.on('error', () => {});
    try {
      return await h2Request(s, { ':path': path }, undefined, 1500);
    } finally {
      s.destroy();
    }
  })();
}

// ---------------------------------------------------------------------------

if (CHILD === 'sniff') {
  await childSniff();
} else if (CHILD) {
  await childMain();
} else {
  describe('robustness: untrusted traffic never crashes or wedges Herald', () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    let h: Running;
    let healthyUp: Upstream;
    let recorder: Awaited<ReturnType<typeof startHeadRecorder>>;
    let fuzzUp: RawUpstream;
    let evt: RawUpstream;
    let memUp: net.Server;
    const memSockets = new Set<net.Socket>();
    const upCases: UpCase[] = [];
    const MEM_TOTAL = 200 * 1024 * 1024;
    let memReceived = 0;

    before(async () => {
      process.on('uncaughtException', onUncaught);
      healthyUp = await startUpstream('healthy');
      recorder = await startHeadRecorder();
      fuzzUp = await startRawUpstream((req, sock) => {
        const c = upCases[Number(req.path.split('/')[2])];
        if (!c) return void sock.write(response(200, 'unknown case'));
        if (c.bytes.length) sock.write(c.bytes);
        if (c.after === 'close') sock.end();
        else if (c.after === 'destroy') sock.destroy();
      });
      // Behaviours for the targeted tests, by path.
      evt = await startRawUpstream((req, sock) => {
        if (req.path === '/evt/evil')
          sock.write(`${response(200, 'ok')}HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nevil!!`);
        else if (req.path === '/evt/garbage-after') sock.write(`${response(200, 'ok')}GARBAGE`);
        else if (req.path === '/evt/101') sock.write('HTTP/1.1 101 Switching Protocols\r\n\r\ntunnel-bytes');
        else if (req.path === '/evt/slow') setTimeout(() => sock.write(response(200, 'slow')), 50);
        else sock.write(response(200, `evt:${req.path}`));
      });
      // Reads nothing for 1.5 s, then drains at full speed; answers with the body size it counted.
      memUp = net.createServer((s) => {
        memSockets.add(s);
        s.on('close', () => memSockets.delete(s));
        s.on('error', () => {});
        s.pause();
        setTimeout(() => s.resume(), 1500);
        let head = Buffer.alloc(0);
        let inBody = false;
        let n = 0;
        s.on('data', (c: Buffer) => {
          if (!inBody) {
            head = Buffer.concat([head, c]);
            const i = head.indexOf('\r\n\r\n');
            if (i < 0) return;
            inBody = true;
            n = head.length - i - 4;
          } else n += c.length;
          memReceived = n;
          if (n >= MEM_TOTAL) s.end(response(200, String(n)));
        });
      });
      await new Promise<void>((r) => memUp.listen(0, '127.0.0.1', r));
      const routes: Obj[] = [
        { match: { prefix: '/healthy' }, route: { cluster: 'healthy' } },
        { match: { prefix: '/direct' }, direct_response: { status: 200, body: { inline_string: 'direct' } } },
        { match: { prefix: '/fuzzup/' }, route: { cluster: 'fuzzup', timeout: '2s', idle_timeout: '3s' } },
        { match: { prefix: '/evt/' }, route: { cluster: 'evt', timeout: '3s' } },
        { match: { prefix: '/mem' }, route: { cluster: 'mem', timeout: '20s' } },
        { match: { prefix: '/' }, route: { cluster: 'recorder', timeout: '2s' } },
      ];
      h = await startHerald(
        httpConfig({
          hcmExtra: { stat_prefix: 'rb' },
          routes,
          clusters: [
            cluster('healthy', [healthyUp.port]),
            cluster('recorder', [recorder.port]),
            cluster('fuzzup', [fuzzUp.port]),
            cluster('evt', [evt.port]),
            cluster('mem', [(memUp.address() as net.AddressInfo).port]),
          ],
        }),
      );
    });

    after(async () => {
      process.off('uncaughtException', onUncaught);
      await h.stop();
      for (const s of memSockets) s.destroy();
      await new Promise((r) => memUp.close(r));
      await Promise.all([healthyUp.close(), recorder.close(), fuzzUp.close(), evt.close()]);
    });

    // -- HTTP/1 request fuzzing ---------------------------------------------

    const reqCases: ReqCase[] = [];
    const reqOutcomes: ReqOutcome[] = [];
    {
      const rng = new Rng(SEED);
      for (let i = 0; i < 300; i++) reqCases.push(genRequest(rng, i));
    }

    it('fuzz: 300 mutated HTTP/1.1 requests each get a status or a close, and Herald keeps serving', async (t) => {
      let batch = 0;
      const outcomes = await inBatches(
        reqCases,
        50,
        (c) => sendCase(h.port(), c, 1200),
        () => healthy(h.port(), `after request-fuzz batch ${++batch}`),
      );
      reqOutcomes.push(...outcomes);
      t.diagnostic(
        `seed=${SEED} outcomes: ${summarize(outcomes.map((o) => (o.kind === 'status' ? `${o.status}` : o.kind)))}`,
      );
      const bad: string[] = [];
      reqCases.forEach((c, i) => {
        const o = outcomes[i]!;
        if (o.kind === 'hang' || o.kind === 'garbage') bad.push(describeCase(c, o));
        if (c.kind === 'long-line' && o.kind === 'status' && o.status !== 431) bad.push(describeCase(c, o));
      });
      assert.deepEqual(bad, [], 'each case must get a status line or a closed connection in time');
      await statSettles(h.adminPort, 'http.rb.downstream_rq_active', 0, 3000);
    });

    it('fuzz: no request line with control characters reaches the upstream', () => {
      assert.ok(reqOutcomes.length > 0, 'runs after the request fuzz');
      const leaked = recorder.heads.filter((head) => hasCtl(head.split('\r\n')[0]!));
      assert.deepEqual(
        leaked.map((x) => JSON.stringify(x.slice(0, 80))),
        [],
      );
    });

    it('fuzz: no header with control characters (other than HTAB) reaches the upstream', () => {
      const leaked = recorder.heads.filter((head) => head.split('\r\n').slice(1).some(hasHeaderCtl));
      assert.deepEqual(
        leaked.map((x) => JSON.stringify(x.slice(0, 120))),
        [],
      );
    });

    // -- Upstream response fuzzing -----------------------------------------

    it('fuzz: malformed upstream responses give the client a response or a close in time', async (t) => {
      const rng = new Rng(SEED ^ 0x9e3779b9);
      for (let i = 0; i < 120; i++) upCases.push(genUpstream(rng, i));
      let batch = 0;
      const outcomes = await inBatches(
        upCases,
        40,
        (c) => fetchUpCase(h.port(), c.index, 4500),
        () => healthy(h.port(), `after upstream-fuzz batch ${++batch}`),
      );
      t.diagnostic(
        `seed=${SEED} outcomes: ${summarize(outcomes.map((o) => (o.kind === 'response' ? `${o.status}${o.complete ? '' : '-partial'}` : o.kind)))}`,
      );
      const bad: string[] = [];
      upCases.forEach((c, i) => {
        const o = outcomes[i]!;
        const sent = c.bytes.toString('latin1');
        const allowed = new Set([502, 503, 504]);
        for (const m of sent.matchAll(/HTTP\/1\.[01] ([1-9]\d\d)/g)) allowed.add(Number(m[1]));
        const desc = `seed=${SEED} #${i} ${c.kind} after=${c.after} -> ${JSON.stringify(o)} ${JSON.stringify(sent.slice(0, 80))}`;
        if (o.kind === 'hang' || o.kind === 'garbage') bad.push(desc);
        else if (o.kind === 'response') {
          if (!allowed.has(o.status) || o.status === 101) bad.push(desc);
          // An incomplete body must end in a reset, never an open connection.
          if (!o.complete && !o.closed) bad.push(desc);
        }
      });
      assert.deepEqual(
        bad,
        [],
        'each client gets a response (or partial then reset), 502/503/504, or a close',
      );
      await statSettles(h.adminPort, 'http.rb.downstream_rq_active', 0, 3000);
      await statSettles(h.adminPort, 'cluster.fuzzup.upstream_rq_active', 0, 3000);
    });

    // -- HTTP/2 --------------------------------------------------------------

    it('HTTP/2: garbage after the connection preface closes that connection only', async () => {
      const preface = latin1('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      const rng = new Rng(SEED + 7);
      for (let i = 0; i < 10; i++) {
        // At least a frame header, and not a SETTINGS frame: nghttp2 must reject it at once
        // (a partial frame header may rightly wait for more bytes).
        const junk = Buffer.alloc(rng.range(9, 400));
        for (let j = 0; j < junk.length; j++) junk[j] = rng.int(256);
        if (junk[3] === 4) junk[3] = 0;
        const r = await rawExchange(h.port(), Buffer.concat([preface, junk]), 3000);
        assert.ok(r.closed, `garbage #${i} after the preface: connection closed`);
      }
      const s = await h2Connect(h.port());
      try {
        assert.equal((await h2Request(s, { ':path': '/healthy' })).status, 200);
      } finally {
        await closeH2(s);
      }
      await healthy(h.port(), 'after HTTP/2 garbage');
    });

    it('HTTP/2: streams reset mid-request leave no active streams behind', async () => {
      const s = await h2Connect(h.port());
      s.on('error', () => {});
      try {
        for (let i = 0; i < 20; i++) {
          const q = s.request({ ':method': 'POST', ':path': `/evt/reset-${i}` }, { endStream: false });
          q.on('error', () => {});
          q.write('partial body');
          if (i % 2) await sleep(5);
          q.close(http2.constants.NGHTTP2_CANCEL);
        }
        await statSettles(h.adminPort, 'http.rb.downstream_rq_active', 0, 3000);
        await statSettles(h.adminPort, 'cluster.evt.upstream_rq_active', 0, 3000);
        assert.equal((await h2Request(s, { ':path': '/healthy' })).status, 200);
      } finally {
        s.destroy();
      }
    });

    it('HTTP/2: a request reset mid-body (RST_STREAM, no END_STREAM) is not passed upstream as complete', async () => {
      // Raw frames: Node's client close() may end the stream (END_STREAM) before resetting it.
      const s = net.connect({ port: h.port(), host: '127.0.0.1' });
      s.on('error', () => {});
      let acked = false;
      s.on('data', () => {
        if (!acked) {
          acked = true;
          s.write(h2Frame(4, 1, 0)); // SETTINGS ACK
        }
      });
      const headers = Buffer.concat([
        Buffer.from([0x83, 0x86]), // :method POST, :scheme http
        hpackLiteral(4, '/evt/truncated'), // :path
        hpackLiteral(1, 'a'), // :authority
      ]);
      s.write(
        Buffer.concat([
          latin1('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
          h2Frame(4, 0, 0), // SETTINGS
          h2Frame(1, 4, 1, headers), // HEADERS with END_HEADERS
          h2Frame(0, 0, 1, latin1('first half of the body')), // DATA without END_STREAM
        ]),
      );
      try {
        await waitFor(
          () => evt.conns.some((c) => Buffer.concat(c.received).includes('first half')),
          3000,
          'the body upstream',
        );
        const cancel = Buffer.alloc(4);
        cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
        s.write(h2Frame(3, 0, 1, cancel)); // RST_STREAM
        await sleep(300);
        const seen = evt.requests.filter((r) => r.path === '/evt/truncated').length;
        assert.equal(seen, 0, 'the upstream saw the truncated body as a complete request');
      } finally {
        s.destroy();
      }
      await statSettles(h.adminPort, 'http.rb.downstream_rq_active', 0, 3000);
    });

    it('HTTP/2: 200 concurrent streams opened and reset', async () => {
      const s = await h2Connect(h.port());
      s.on('error', () => {});
      try {
        const streams: http2.ClientHttp2Stream[] = [];
        for (let i = 0; i < 200; i++) {
          const q = s.request({ ':method': 'POST', ':path': `/evt/burst-${i}` }, { endStream: false });
          q.on('error', () => {});
          q.write('x');
          streams.push(q);
        }
        await sleep(50);
        for (const q of streams) q.close(http2.constants.NGHTTP2_CANCEL);
        await statSettles(h.adminPort, 'http.rb.downstream_rq_active', 0, 5000);
        assert.equal((await h2Request(s, { ':path': '/healthy' })).status, 200);
      } finally {
        s.destroy();
      }
      await healthy(h.port(), 'after 200 reset streams');
    });

    // -- Slowloris -----------------------------------------------------------

    it('slowloris: 50 connections trickling header bytes do not slow other clients', async () => {
      const cx0 = (await stat(h.adminPort, 'http.rb.downstream_cx_active')) ?? 0;
      const text = latin1('GET /healthy HTTP/1.1\r\nHost: slow\r\nX-Slow: 1234567890\r\n');
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 50; i++) {
        const s = net.connect({ port: h.port(), host: '127.0.0.1' });
        s.on('error', () => {});
        sockets.push(s);
      }
      let tick = 0;
      const trickle = setInterval(() => {
        for (const s of sockets)
          if (!s.destroyed) s.write(text.subarray(tick % text.length, (tick % text.length) + 1));
        tick++;
      }, 100);
      try {
        const latencies: number[] = [];
        const until = Date.now() + 2000;
        while (Date.now() < until) {
          const t0 = Date.now();
          await healthy(h.port(), 'during slowloris');
          latencies.push(Date.now() - t0);
          await sleep(50);
        }
        assert.ok(latencies.length >= 10, `only ${latencies.length} requests completed in 2 s`);
        assert.ok(Math.max(...latencies) < 500, `slowest request took ${Math.max(...latencies)} ms`);
        assert.ok(
          sockets.every((s) => !s.destroyed),
          'trickling connections are held (Envoy has no header timeout by default)',
        );
      } finally {
        clearInterval(trickle);
        for (const s of sockets) s.destroy();
      }
      // Back to what it was before (or lower: a connection of an earlier test may close meanwhile).
      const until = Date.now() + 3000;
      let cx = Number.POSITIVE_INFINITY;
      while (
        Date.now() < until &&
        (cx = (await stat(h.adminPort, 'http.rb.downstream_cx_active')) ?? 0) > cx0
      )
        await sleep(25);
      assert.ok(cx <= cx0, `http.rb.downstream_cx_active ${cx}, was ${cx0} before the slowloris`);
    });

    // -- Backpressure ----------------------------------------------------------

    it('backpressure: a 200 MB upload to a slow upstream keeps memory bounded and completes', async () => {
      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      try {
        const reply = await withTimeout(
          new Promise<string>((resolve, reject) => {
            const c = net.connect({ port: h.port(), host: '127.0.0.1' });
            let got = '';
            c.on('data', (d: Buffer) => {
              got += d.toString('latin1');
              if (got.endsWith(`\r\n\r\n${MEM_TOTAL}`)) {
                c.destroy();
                resolve(got);
              }
            });
            c.on('close', () => resolve(got));
            c.on('error', reject);
            c.write(`POST /mem HTTP/1.1\r\nHost: mem\r\nContent-Length: ${MEM_TOTAL}\r\n\r\n`);
            const chunk = Buffer.alloc(256 * 1024, 0x78);
            let sent = 0;
            const pump = () => {
              while (sent < MEM_TOTAL && !c.destroyed) {
                sent += chunk.length;
                if (!c.write(chunk)) return void c.once('drain', pump);
              }
            };
            pump();
          }),
          30000,
          `the 200 MB upload (upstream has ${memReceived} bytes)`,
        );
        assert.match(reply, /^HTTP\/1\.1 200 /);
        assert.ok(reply.endsWith(String(MEM_TOTAL)), `upstream counted ${reply.slice(-12)}`);
      } finally {
        clearInterval(sampler);
      }
      const growth = (peak - base) / (1024 * 1024);
      assert.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MB for a 200 MB body`);
      await healthy(h.port(), 'after the upload');
    });

    // -- Targeted reproductions (review findings) ---------------------------

    it('a bare-LF request is answered or closed', async () => {
      const r = await rawExchange(h.port(), 'GET /healthy HTTP/1.1\nHost: a\n\n', 1500, '127.0.0.1', (g) =>
        g.includes('\r\n'),
      );
      assert.ok(r.closed || /^HTTP\/1\.1 \d{3}/.test(r.data.toString('latin1')), 'no answer and no close');
    });

    for (const [label, target] of [
      ['LF', '/evt/a\nX-Injected:1'],
      ['NUL', '/evt/a\0b'],
      ['DEL/SOH', '/evt/a\x7f\x01b'],
    ] as const) {
      it(`a request target containing ${label} is rejected with 400 and never forwarded`, async () => {
        const before = evt.requests.length;
        const r = await rawExchange(
          h.port(),
          `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`,
          1000,
          '127.0.0.1',
          (g) => g.includes('\r\n\r\n'),
        );
        assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
        assert.equal(evt.requests.length, before, 'forwarded upstream');
      });
    }

    it('a request target with a #fragment is rejected (Envoy http_reject_path_with_fragment)', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /evt/frag#x HTTP/1.1\r\nHost: a\r\n\r\n',
        1000,
        '127.0.0.1',
        (g) => g.includes('\r\n\r\n'),
      );
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
    });

    it('a header value with a control character (0x01) is rejected with 400, as Envoy does', async () => {
      const before = evt.requests.length;
      const r = await rawExchange(
        h.port(),
        'GET /evt/hctl HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n',
        1000,
        '127.0.0.1',
        (g) => g.includes('\r\n\r\n'),
      );
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 400 /);
      assert.equal(evt.requests.length, before, 'forwarded upstream');
    });

    it('a local reply keeps the keep-alive connection (a second request on it is answered)', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /direct HTTP/1.1\r\nHost: a\r\n\r\nGET /direct HTTP/1.1\r\nHost: a\r\n\r\n',
        1000,
        '127.0.0.1',
        (got) => (got.toString().match(/HTTP\/1\.1 200/g) ?? []).length >= 2,
      );
      const text = r.data.toString('latin1');
      assert.equal((text.match(/HTTP\/1\.1 200/g) ?? []).length, 2, `got ${JSON.stringify(text)}`);
    });

    it('a client that half-closes after its request gets the response, then the connection closes', async () => {
      const cx0 = (await stat(h.adminPort, 'http.rb.downstream_cx_active')) ?? 0;
      const s = net.connect({ port: h.port(), host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => {});
      let got = '';
      let closedByPeer = false;
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('end', () => (closedByPeer = true));
      s.end('GET /healthy HTTP/1.1\r\nHost: a\r\n\r\n');
      try {
        await waitFor(() => got.includes('healthy'), 2000, 'the response');
        await waitFor(() => closedByPeer, 1500, 'Herald to close the half-closed connection');
      } finally {
        s.destroy();
      }
      await statSettles(h.adminPort, 'http.rb.downstream_cx_active', cx0, 1500);
    });

    it('a connection that sends part of the HTTP/2 preface and a FIN is closed', async () => {
      const run = await runSniffChild();
      assert.ok(run.closed, 'Herald did not close the connection within 3 s');
    });

    it('a connection dropped while sniffing for the HTTP/2 preface leaves no timer behind', async () => {
      const run = await runSniffChild();
      assert.ok(
        run.timersAfter <= run.timersBefore,
        `ref'd timers: ${run.timersBefore} before, ${run.timersAfter} after the connection closed`,
      );
    });

    it('bytes after a complete upstream response are not served as the next pipelined response', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /evt/evil HTTP/1.1\r\nHost: a\r\n\r\nGET /evt/second HTTP/1.1\r\nHost: a\r\n\r\n',
        1500,
        '127.0.0.1',
        (got) => got.includes('evt:/evt/second') || got.includes('evil!!'),
      );
      const text = r.data.toString('latin1');
      assert.ok(!text.includes('evil!!'), "the second client request got the upstream's stray bytes");
      assert.ok(text.includes('evt:/evt/second'), `got ${JSON.stringify(text)}`);
    });

    it('an upstream connection that sent bytes after its response is closed, not leaked', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /evt/garbage-after HTTP/1.1\r\nHost: a\r\n\r\n',
        1000,
        '127.0.0.1',
        (g) => g.includes('ok'),
      );
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 200 /);
      const served = evt.requests.find((q) => q.path === '/evt/garbage-after');
      const conn = served && evt.conns[served.conn];
      assert.ok(conn, 'the upstream connection that served it');
      await waitFor(
        () => conn.closed || conn.ended,
        1500,
        'Herald to close the out-of-sync upstream connection',
      );
    });

    it('a 101 answer to a request that did not ask to upgrade is not passed on as a tunnel', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /evt/101 HTTP/1.1\r\nHost: a\r\n\r\n',
        1500,
        '127.0.0.1',
        (g) => g.includes('\r\n\r\n'),
      );
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 502 /);
    });

    it('a huge x-envoy-upstream-rq-timeout-ms does not time out at once', async () => {
      const r = await rawExchange(
        h.port(),
        'GET /evt/slow HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nx-envoy-upstream-rq-timeout-ms: 99999999999\r\n\r\n',
        2000,
        '127.0.0.1',
        (g) => g.includes('\r\n\r\n'),
      );
      assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 200 /);
    });

    it('a client that pipelines requests and never reads cannot make Herald queue responses without bound', async () => {
      // Envoy closes the connection once 2 responses are queued unflushed (http1.response_flood).
      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      const s = net.connect({ port: h.port(), host: '127.0.0.1' });
      s.on('error', () => {});
      let closedByHerald = false;
      s.on('close', () => (closedByHerald = true));
      s.pause(); // never reads a response
      const chunk = latin1('GET /direct HTTP/1.1\r\nHost: a\r\n\r\n'.repeat(2000));
      let sent = 0;
      try {
        await new Promise<void>((resolve) => {
          const deadline = setTimeout(resolve, 3000);
          const pump = () => {
            while (sent < 8 * 1024 * 1024 && !s.destroyed) {
              sent += chunk.length;
              if (!s.write(chunk)) return void s.once('drain', pump);
            }
            clearTimeout(deadline);
            resolve();
          };
          s.once('connect', pump);
        });
        await sleep(300);
      } finally {
        clearInterval(sampler);
        s.destroy();
      }
      const growth = (peak - base) / (1024 * 1024);
      assert.ok(
        closedByHerald || growth < 64,
        `${(sent / 1048576).toFixed(1)} MB of pipelined requests grew RSS by ${growth.toFixed(0)} MB`,
      );
    });

    // -- Crashes (each in a child process) ----------------------------------

    it('crash: duplicate single-value request headers to an HTTP/2 upstream', async () => {
      const run = await inChild((port) =>
        rawExchange(port, 'GET /h2/x HTTP/1.1\r\nHost: a\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n', 1000),
      );
      assert.ok(run.alive, `Herald died:\n${run.stderr}`);
      assert.equal(run.statusAfter, 200);
    });

    it('crash: request trailers with a connection header to an HTTP/2 upstream', async () => {
      const run = await inChild((port) =>
        rawExchange(
          port,
          'POST /h2/t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nConnection: x\r\n\r\n',
          1000,
        ),
      );
      assert.ok(run.alive, `Herald died:\n${run.stderr}`);
      assert.equal(run.statusAfter, 200);
    });

    it('crash: an HTTP/1 upstream response with two content-type headers, to an HTTP/2 client', async () => {
      const run = await inChild((port) => h2Get(port, '/dup-content-type'));
      assert.ok(run.alive, `Herald died:\n${run.stderr}`);
      assert.equal(run.statusAfter, 200);
    });

    it('crash: upstream response trailers with a connection header, to an HTTP/2 client', async () => {
      const run = await inChild((port) => h2Get(port, '/connection-trailer'));
      assert.ok(run.alive, `Herald died:\n${run.stderr}`);
      assert.equal(run.statusAfter, 200);
    });

    it('no uncaughtException fired during the suite', async () => {
      await healthy(h.port(), 'at the end');
      assert.deepEqual(
        uncaught.map((e) => String((e as Error)?.stack ?? e)),
        [],
      );
    });
  });
}
