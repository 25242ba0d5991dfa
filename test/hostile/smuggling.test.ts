// A corpus of request-smuggling and malformed-framing requests sent through a real Herald (in
// process, raw client sockets) to an upstream that records exactly what it receives and reads it
// strictly (test/hostile/upstream.ts). Each
// malformed case carries a hidden request (GET /smuggled) after the part a lenient parser would
// misread; Herald must answer with Envoy's status (400, or 501 for an unknown transfer-coding),
// close the connection, and the upstream must never see the hidden request. A few well-formed
// controls (framing a strict parser accepts) check the intended request, and only it, arrives.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, startHerald, staticCluster } from '../helpers/harness.js';
import { type ParsedResponse, parseResponses } from '../helpers/raw-http.js';
import { type RecordingUpstream, startRecordingUpstream } from './upstream.js';

const HIDDEN = 'GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n';
const CHUNKED = 'Transfer-Encoding: chunked';

interface Exchange {
  responses: ParsedResponse[];
  /** Herald sent its FIN (or closed). */
  ended: boolean;
  timedOut: boolean;
}

/**
 * Writes `data` on a fresh connection. Resolves when Herald ends the connection, or (with
 * `responses`) once that many responses arrived; bounded by `timeoutMs`.
 */
function exchange(
  port: number,
  data: string,
  responses: number | undefined,
  timeoutMs = 3000,
): Promise<Exchange> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (ended: boolean, timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      s.destroy();
      resolve({ responses: parseResponses(Buffer.concat(chunks)), ended, timedOut });
    };
    const t = setTimeout(() => done(false, true), timeoutMs);
    s.on('connect', () => s.write(Buffer.from(data, 'latin1')));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (responses !== undefined && parseResponses(Buffer.concat(chunks)).length >= responses)
        done(false, false);
    });
    s.on('end', () => done(true, false));
    s.on('close', () => done(true, false));
    s.on('error', () => {});
  });
}

/** [name, request bytes (PATH is replaced by the case's own path), status(es) Herald answers]. */
const MALFORMED: [string, string, number | number[]][] = [
  // CL.TE and TE.CL: both framings present (RFC 9112 6.1; Envoy rejects by default).
  [
    'CL.TE',
    `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n${CHUNKED}\r\n\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'TE.CL',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\nContent-Length: 4\r\n\r\n5c\r\n${HIDDEN}0\r\n\r\n`,
    400,
  ],
  // TE.TE: Transfer-Encoding obfuscated so that one parser sees chunked and another does not.
  [
    'TE xchunked',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE chunked, identity',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE identity, chunked',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE chunked + TE identity',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE chunked twice',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n${CHUNKED}\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE quoted',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE NBSP chunked',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    501,
  ],
  [
    'TE space before colon',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'TE tab before colon',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'TE VT before value',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'TE obs-fold value',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  ['TE obs-fold line', `POST PATH HTTP/1.1\r\nHost: h\r\nX: y\r\n ${CHUNKED}\r\n\r\n0\r\n\r\n${HIDDEN}`, 400],
  ['TE after bare LF', `POST PATH HTTP/1.1\r\nHost: h\r\nX: y\n${CHUNKED}\r\n\r\n0\r\n\r\n${HIDDEN}`, 400],
  ['TE in HTTP/1.0', `POST PATH HTTP/1.0\r\nHost: h\r\n${CHUNKED}\r\n\r\n0\r\n\r\n${HIDDEN}`, [400, 426]],
  // Content-Length variants.
  [
    'CL twice, equal',
    `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab${HIDDEN}`,
    400,
  ],
  [
    'CL twice, different',
    `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 38\r\n\r\nab${HIDDEN}`,
    400,
  ],
  ['CL list 2, 2', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nab${HIDDEN}`, 400],
  ['CL plus sign', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\nab${HIDDEN}`, 400],
  ['CL minus sign', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: -2\r\n\r\nab${HIDDEN}`, 400],
  ['CL hex', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 0x2\r\n\r\nab${HIDDEN}`, 400],
  ['CL inner space', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 2 2\r\n\r\nab${HIDDEN}`, 400],
  ['CL NBSP', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: \xa02\r\n\r\nab${HIDDEN}`, 400],
  ['CL space before colon', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length : 2\r\n\r\nab${HIDDEN}`, 400],
  ['CL huge', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456789\r\n\r\nab${HIDDEN}`, 400],
  // Line endings and control characters in the head.
  ['bare LF head', `GET PATH HTTP/1.1\nHost: h\n\n${HIDDEN}`, 400],
  ['bare LF header line', `GET PATH HTTP/1.1\r\nHost: h\nX: y\r\n\r\n${HIDDEN}`, 400],
  ['bare CR header line', `GET PATH HTTP/1.1\r\nHost: h\rX: y\r\n\r\n${HIDDEN}`, 400],
  ['CR before CRLF', `GET PATH HTTP/1.1\r\nHost: h\r\nX: y\r\r\n\r\n${HIDDEN}`, 400],
  ['NUL in header value', `GET PATH HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n${HIDDEN}`, 400],
  ['LF in request line', `GET PATH\nX: HTTP/1.1\r\nHost: h\r\n\r\n${HIDDEN}`, 400],
  ['bare LF before request', `\nGET PATH HTTP/1.1\r\nHost: h\r\n\r\n${HIDDEN}`, 400],
  ['two Host lines', `GET PATH HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${HIDDEN}`, 400],
  ['userinfo in absolute form', `GET http://user:pw@h/PATH HTTP/1.1\r\nHost: h\r\n\r\n${HIDDEN}`, 400],
  // Chunked bodies.
  // The reported smuggle: the size line swallows "x" through the bare LF, so a lenient reader
  // frames 1 byte ("A"), ends the body and takes the hidden request as the next one; a reader
  // ending lines at LF frames "x", then a 0xA-byte chunk, and never sees it.
  [
    'chunk-ext bare LF (hidden request after the body)',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n1;\nx\r\nA\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk-ext bare LF',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2;\nxx\r\n${HIDDEN}\r\n0\r\n\r\n`,
    400,
  ],
  [
    'chunk-ext bare CR',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2;a\rxx\r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk-ext NUL',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2;a\0\r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk size trailing space',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2 \r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk size leading space',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n 2\r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk size two numbers',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2 3\r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk lines with bare LF',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2\nab\n0\n\n${HIDDEN}`,
    400,
  ], // Nothing after the bare-LF lines: answered at once, not when a CRLF finally comes.
  ['chunk lines with bare LF only', `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2\nab\n0\n\n`, 400],

  [
    'chunk size overflow',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n${'f'.repeat(20)}\r\n${HIDDEN}`,
    400,
  ],
  ['chunk size not hex', `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\nzz\r\n${HIDDEN}`, 400],
  [
    'chunk size with sign',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n+2\r\nab\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  [
    'chunk data without CRLF',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2\r\nab${HIDDEN}0\r\n\r\n`,
    400,
  ],
  [
    'chunk data longer than size',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2\r\nabc\r\n0\r\n\r\n${HIDDEN}`,
    400,
  ],
  ['trailers with bare LF', `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n0\r\nX: y\n\n${HIDDEN}`, 400],
  ['last chunk with bare LF', `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n0\n\n${HIDDEN}`, 400],
];

/** Well-formed framings: [name, request bytes, the body the upstream must get]. */
const CONTROLS: [string, string, string][] = [
  [
    'chunked with BWS before extensions, quoted values, leading zeros and trailers',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n2 ;a=b\r\nab\r\n001\t;q="x;y"\r\nc\r\n0\r\nX-T: 1\r\n\r\n`,
    'abc',
  ],
  [
    'Transfer-Encoding: CHUNKED',
    `POST PATH HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nab\r\n0\r\n\r\n`,
    'ab',
  ],
  ['Content-Length with OWS', `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length:\t 2 \r\n\r\nab`, 'ab'],
  [
    'a request inside a content-length body',
    `POST PATH HTTP/1.1\r\nHost: h\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`,
    HIDDEN,
  ],
  [
    'a request inside a chunked body',
    `POST PATH HTTP/1.1\r\nHost: h\r\n${CHUNKED}\r\n\r\n${HIDDEN.length.toString(16)}\r\n${HIDDEN}\r\n0\r\n\r\n`,
    HIDDEN,
  ],
];

describe('HTTP/1 request smuggling corpus (real Herald, recording upstream)', () => {
  let up: RecordingUpstream;
  let h: Running;

  before(async () => {
    up = await startRecordingUpstream();
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: "/" }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }),
    );
  });

  after(async () => {
    await h?.stop();
    await up?.close();
  });

  /** What the upstream received since `mark` (cases run one after another). */
  const since = (mark: { requests: number; malformed: number }) => ({
    paths: up.requests.slice(mark.requests).map((r) => r.path),
    requests: up.requests.slice(mark.requests),
    malformed: up.malformed.slice(mark.malformed),
  });
  const mark = () => ({ requests: up.requests.length, malformed: up.malformed.length });

  MALFORMED.forEach(([name, raw, status], i) => {
    it(`${name}: ${[status].flat().join(' or ')}, closed, nothing forwarded`, async () => {
      const m = mark();
      const hidden = `/smuggled-m${i}`;
      const r = await exchange(
        h.port(),
        raw.replace('PATH', `/m${i}`).replace('/smuggled', hidden),
        undefined,
      );
      const got = since(m);
      assert.ok(!got.paths.includes(hidden), 'the hidden request must never reach the upstream');
      assert.deepEqual(got.paths, [], 'the malformed request must not be forwarded');
      assert.deepEqual(got.malformed, [], 'what Herald forwards is always well-formed');
      assert.equal(r.timedOut, false, 'Herald must answer and close without waiting for more bytes');
      assert.equal(r.responses.length, 1, 'exactly one response');
      assert.ok([status].flat().includes(r.responses[0]!.status), `status ${r.responses[0]!.status}`);
      assert.equal(r.responses[0]!.headers.connection, 'close');
      assert.equal(r.ended, true, 'Herald closes the connection');
    });
  });

  CONTROLS.forEach(([name, raw, body], i) => {
    it(`control: ${name} is forwarded once, with its body`, async () => {
      const m = mark();
      const r = await exchange(h.port(), raw.replace('PATH', `/c${i}`), 1);
      assert.equal(r.timedOut, false);
      assert.equal(r.responses[0]?.status, 200);
      const got = since(m);
      assert.deepEqual(got.paths, [`/c${i}`], 'exactly the one request');
      assert.equal(got.requests[0]!.body, body);
      assert.deepEqual(got.malformed, []);
    });
  });

  it('Connection options are whole tokens: after "xupgrade" the next bytes are a request, not a tunnel', async () => {
    // Whatever the answer to the first request (the connection manager decides about upgrades),
    // the codec parses what follows as a request of its own instead of passing it on raw.
    const r = await exchange(
      h.port(),
      'GET /u1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: xupgrade\r\n\r\nGET /u2 HTTP/1.1\r\nHost: h\r\n\r\n',
      2,
    );
    assert.equal(r.responses.length, 2);
    assert.notEqual(r.responses[0]!.status, 101);
    assert.deepEqual([r.responses[1]!.status, r.responses[1]!.body], [200, 'GET /u2']);
  });

  it('headers named constructor and __proto__ are forwarded as sent, and Herald keeps serving', async () => {
    const r = await exchange(
      h.port(),
      'GET /p1 HTTP/1.1\r\nHost: h\r\nConstructor: c\r\n__proto__: p\r\n__proto__: q\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\n\r\n',
      2,
    );
    assert.deepEqual(
      r.responses.map((x) => x.status),
      [200, 200],
    );
    const got = up.requests.find((q) => q.path === '/p1')!.headers;
    const own = (k: string) => Object.getOwnPropertyDescriptor(got, k)?.value;
    assert.equal(own('constructor'), 'c');
    assert.deepEqual(own('__proto__'), ['p', 'q']);
    assert.doesNotMatch(Buffer.concat(up.received).toString('latin1'), /native code/);
  });
});
