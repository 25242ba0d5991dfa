// Property-based fuzzing of Herald's HTTP/1 request parser (src/http/http1/parser.ts) with
// fast-check. Generated request streams (pipelined messages, random header case and whitespace,
// content-length and chunked bodies with extensions and trailers, bodies that look like requests)
// are parsed whole, split at random offsets, and in transient-input mode; then mutated (CR, LF,
// NUL, space and other bytes inserted, dropped, replaced; CRs dropped; ranges duplicated) and
// given adversarial framing headers (CL.TE, TE.CL, obfuscated Transfer-Encoding). Invariants:
//  - nothing but a ParseError is ever thrown;
//  - however the input is split, and in transient mode, the result is the same;
//  - every message Herald completes is the one a strict reading (test/hostile/strict-http1.ts)
//    completes at the same place: Herald never frames a second message where a strict parser
//    sees one (request smuggling), and where the strict reading is malformed Herald refuses it
//    too instead of waiting for more bytes.
//
// CI runs a short pass (FUZZ_RUNS, default 200 runs per property, a second or two). Longer:
//   npm run fuzz                                   (100000 runs per property)
//   FUZZ_RUNS=100000 node --test dist/test/hostile/http1-fuzz.test.js   (after npm run build)
// A failure prints fast-check's seed and path; FUZZ_SEED=<seed> replays the same runs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type HeraldParse, heraldParse, type Message, splitAt, strictParse } from './strict-http1.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const params = { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) };

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/** Field-value characters: VCHAR, SP, HTAB and some obs-text. */
const VALUE_CHARS = [
  ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)),
  '\t',
  '\x80',
  '\xa0',
  '\xe9',
  '\xff',
];
/** Framing and routing headers are generated on purpose, not at random. */
const RESERVED = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'upgrade']);
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

const token = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: min, maxLength: max });

/** Flips the case of the letters whose bit is set in `mask`. */
function withCase(s: string, mask: number): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    out += (mask >>> (i % 31)) & 1 ? (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) : c;
  }
  return out;
}

const ows = fc.constantFrom('', '', ' ', '\t', '  ', ' \t');

const fieldArb = fc
  .record({
    name: fc.oneof(
      fc.constantFrom('Accept', 'User-Agent', 'X-Request-Id', 'Cookie', 'constructor', '__proto__', 'Expect'),
      token(1, 12),
    ),
    mask: fc.nat(),
    lead: ows,
    value: fc.string({ unit: fc.constantFrom(...VALUE_CHARS), maxLength: 20 }),
    trail: ows,
  })
  .filter((f) => !RESERVED.has(f.name.toLowerCase()));

const bodyArb = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b)), maxLength: 80 }),
  fc.constant(SMUGGLED),
  fc.constant(`0\r\n\r\n${SMUGGLED}`),
  fc.constant(`5\r\nhello\r\n0\r\n\r\n`),
);

const EXTENSIONS = ['', '', ';a', ';a=b', ' ;a=1', '\t;x="q;\\"z"', ';a;b=c', ';n=\xe9'];

const messageArb = fc.record({
  preCRLF: fc.constantFrom(0, 0, 0, 1, 2),
  method: fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'), token(1, 8)),
  path: fc.string({ unit: fc.constantFrom(...'abcXYZ019/._~%?=&-@:'), maxLength: 24 }).map((p) => `/${p}`),
  minor: fc.constantFrom(1, 1, 1, 0),
  host: fc.option(fc.constantFrom('h', 'example.com:8080', '127.0.0.1'), { nil: undefined }),
  connection: fc.option(fc.constantFrom('keep-alive', 'close', 'Keep-Alive, Upgrade', 'te , CLOSE'), {
    nil: undefined,
  }),
  fields: fc.array(fieldArb, { maxLength: 6 }),
  framing: fc.constantFrom('none', 'cl', 'chunked'),
  frameMask: fc.nat(),
  body: bodyArb,
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
  sizes: fc.array(
    fc.record({ zeros: fc.constantFrom(0, 0, 1, 3), mask: fc.nat(), ext: fc.constantFrom(...EXTENSIONS) }),
    {
      minLength: 6,
      maxLength: 6,
    },
  ),
  trailers: fc.array(fieldArb, { maxLength: 2 }),
});
type GenMessage = typeof messageArb extends fc.Arbitrary<infer T> ? T : never;

function hex(n: number, zeros: number, mask: number): string {
  return '0'.repeat(zeros) + withCase(n.toString(16), mask);
}

/** The request's bytes (latin1 string), and what a parser must make of it. */
function serialize(m: GenMessage): { text: string; body: string; chunked: boolean } {
  const framing = m.minor === 0 && m.framing === 'chunked' ? 'cl' : m.framing;
  const lines = [`${m.method} ${m.path} HTTP/1.${m.minor}`];
  if (m.host !== undefined) lines.push(`${withCase('Host', m.frameMask)}: ${m.host}`);
  if (m.connection !== undefined) lines.push(`Connection: ${m.connection}`);
  for (const f of m.fields) lines.push(`${withCase(f.name, f.mask)}:${f.lead}${f.value}${f.trail}`);
  let body = '';
  if (framing === 'cl') {
    lines.push(`${withCase('Content-Length', m.frameMask)}: ${m.body.length}`);
    body = m.body;
  } else if (framing === 'chunked') {
    lines.push(`${withCase('Transfer-Encoding', m.frameMask)}: ${withCase('chunked', m.frameMask >>> 3)}`);
    const cuts = [...new Set(m.cuts.map((c) => c % (m.body.length + 1)))]
      .filter((c) => c > 0 && c < m.body.length)
      .sort((a, b) => a - b);
    let prev = 0;
    let i = 0;
    for (const c of [...cuts, m.body.length]) {
      if (c === prev) continue;
      const sz = m.sizes[i++ % m.sizes.length]!;
      body += `${hex(c - prev, sz.zeros, sz.mask)}${sz.ext}\r\n${m.body.slice(prev, c)}\r\n`;
      prev = c;
    }
    const last = m.sizes[5]!;
    body += `${'0'.repeat(last.zeros + 1)}${last.ext}\r\n`;
    for (const t of m.trailers) body += `${withCase(t.name, t.mask)}:${t.lead}${t.value}${t.trail}\r\n`;
    body += '\r\n';
  }
  return {
    text: `${'\r\n'.repeat(m.preCRLF)}${lines.join('\r\n')}\r\n\r\n${body}`,
    body: framing === 'none' ? '' : m.body,
    chunked: framing === 'chunked',
  };
}

const streamArb = fc.array(messageArb, { minLength: 1, maxLength: 3 });

const cutsArb = fc.array(fc.nat(), { maxLength: 12 });

/** One more way to cut: every byte on its own (the slowest and most thorough split). */
function bytewise(input: Buffer): Buffer[] {
  return [...input].map((b) => Buffer.from([b]));
}

/** What a message is, in a form deepEqual compares (header maps keep their own prototype check). */
function same(a: Message[], b: Message[], what: string): void {
  assert.equal(a.length, b.length, `${what}: message count`);
  for (let i = 0; i < a.length; i++) assert.deepStrictEqual(a[i], b[i], `${what}: message ${i}`);
}

/** Split, transient and whole parses agree: the same messages and the same error-or-not. */
function assertSplitIndependent(input: Buffer, cuts: number[], whole: HeraldParse): void {
  for (const [name, pieces] of [
    ['split', splitAt(input, cuts)],
    ['bytewise', bytewise(input)],
  ] as const) {
    for (const transient of [false, true]) {
      const r = heraldParse(pieces, transient);
      const what = `${name}${transient ? ', transient' : ''}`;
      same(r.messages, whole.messages, what);
      assert.equal(r.error !== undefined, whole.error !== undefined, `${what}: error ${r.error?.message}`);
      assert.equal(r.pending, whole.pending, `${what}: pending`);
    }
  }
  const t = heraldParse([input], true);
  same(t.messages, whole.messages, 'whole, transient');
  assert.equal(t.error !== undefined, whole.error !== undefined, 'whole, transient: error');
}

/** The smuggling invariant: Herald completes nothing the strict reading does not, and no differently. */
function assertNoWiderThanStrict(input: Buffer, herald: HeraldParse): void {
  const ref = strictParse(input);
  const n = herald.messages.length;
  if (ref.outcome === 'unmodelled' && n > ref.messages.length) return;
  assert.ok(
    n <= ref.messages.length,
    `Herald completed ${n} message(s), the strict reading ${ref.messages.length} (${ref.outcome}: ${ref.reason ?? ''})`,
  );
  same(herald.messages, ref.messages.slice(0, n), 'Herald vs the strict reading');
  // Malformed by the strict reading: Herald refuses it (rather than waiting for more bytes).
  if (ref.outcome === 'error') assert.ok(herald.error, `Herald accepted what is malformed: ${ref.reason}`);
  // Complete by the strict reading and not refused: Herald has read all of it.
  if (ref.outcome === 'clean' && !herald.error) {
    assert.equal(n, ref.messages.length, 'Herald completed fewer messages than are there');
    assert.equal(herald.pending, false, 'Herald waits for bytes that will not come');
  }
}

const INTERESTING = [
  13, 10, 0, 32, 9, 59, 58, 44, 0x30, 0x61, 0x7f, 0x0b, 0x0c, 0xa0, 0x22, 0x2b, 0x2d, 0x46,
];

const mutationArb = fc.record({
  kind: fc.constantFrom('insert', 'delete', 'replace', 'dropCR', 'duplicate', 'insertCRLF'),
  at: fc.nat(),
  byte: fc.constantFrom(...INTERESTING),
  len: fc.integer({ min: 1, max: 40 }),
});
type Mutation = typeof mutationArb extends fc.Arbitrary<infer T> ? T : never;

function mutate(input: Buffer, mutations: Mutation[]): Buffer {
  let b = [...input];
  for (const m of mutations) {
    const at = m.at % (b.length + 1);
    switch (m.kind) {
      case 'insert':
        b.splice(at, 0, m.byte);
        break;
      case 'insertCRLF':
        b.splice(at, 0, 13, 10);
        break;
      case 'delete':
        b.splice(at, 1);
        break;
      case 'replace':
        if (at < b.length) b[at] = m.byte;
        break;
      case 'dropCR': {
        const crs = b.flatMap((x, i) => (x === 13 ? [i] : []));
        if (crs.length) b.splice(crs[m.at % crs.length]!, 1);
        break;
      }
      case 'duplicate':
        b = [...b.slice(0, at), ...b.slice(at, at + m.len), ...b.slice(at)];
        break;
    }
  }
  return Buffer.from(b);
}

/** Framing header lines a smuggler tries, alone or together. */
const FRAMING_LINES = [
  'Content-Length: LEN',
  'Content-Length: LEN',
  'Content-Length: LEN, LEN',
  'Content-Length: +LEN',
  'Content-Length: 0',
  'Content-Length:  LEN\t',
  'Content-Length: LEN\xa0',
  'Content-Length : LEN',
  ' Content-Length: LEN',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: CHUNKED',
  'Transfer-Encoding: xchunked',
  'Transfer-Encoding: chunked, identity',
  'Transfer-Encoding: identity, chunked',
  'Transfer-Encoding: identity',
  'Transfer-Encoding : chunked',
  'Transfer-Encoding:\tchunked',
  'Transfer-Encoding: \x0bchunked',
  'Transfer-Encoding: \xa0chunked',
  'Transfer-Encoding: "chunked"',
  'Transfer-Encoding\t: chunked',
  'X: y\r\n Transfer-Encoding: chunked',
  'X: y\nTransfer-Encoding: chunked',
  'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked',
  'Host: other',
  'Connection: close',
];

const BODIES = [
  SMUGGLED,
  `0\r\n\r\n${SMUGGLED}`,
  `2\r\nab\r\n0\r\n\r\n${SMUGGLED}`,
  `2;\nxx\r\n${SMUGGLED}\r\n0\r\n\r\n`,
  `${(SMUGGLED.length + 2).toString(16)}\r\nxx${SMUGGLED}\r\n0\r\n\r\n`,
  `2 \r\nab\r\n0\r\n\r\n${SMUGGLED}`,
  `2\nab\n0\n\n${SMUGGLED}`,
  `5\r\nab\r\n0\r\n\r\n`,
  'ab',
];

const framingArb = fc.record({
  lines: fc.array(fc.constantFrom(...FRAMING_LINES), { maxLength: 3 }),
  body: fc.constantFrom(...BODIES),
  lenDelta: fc.integer({ min: -6, max: 6 }),
  cuts: cutsArb,
  mutations: fc.array(mutationArb, { maxLength: 1 }),
});

describe(`HTTP/1 parser fuzzing (${RUNS} runs per property)`, () => {
  it('valid streams parse to what was generated, however split, and in transient mode', () => {
    fc.assert(
      fc.property(streamArb, cutsArb, (msgs, cuts) => {
        const parts = msgs.map(serialize);
        const input = Buffer.from(parts.map((p) => p.text).join(''), 'latin1');
        const whole = heraldParse([input]);
        assert.equal(whole.error, undefined, `refused a valid stream: ${whole.error?.message}`);
        assert.equal(whole.pending, false);
        assert.equal(whole.messages.length, msgs.length);
        whole.messages.forEach((m, i) => {
          assert.equal(m.method, msgs[i]!.method);
          assert.equal(m.path, msgs[i]!.path);
          assert.equal(m.body, parts[i]!.body);
          assert.equal(m.chunked, parts[i]!.chunked);
        });
        const ref = strictParse(input);
        assert.equal(ref.outcome, 'clean', ref.reason);
        same(whole.messages, ref.messages, 'Herald vs the strict reading');
        assertSplitIndependent(input, cuts, whole);
      }),
      params,
    );
  });

  it('mutated streams: only ParseError, split-independent, never framed wider than the strict reading', () => {
    fc.assert(
      fc.property(
        streamArb,
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        cutsArb,
        (msgs, muts, cuts) => {
          const valid = Buffer.from(msgs.map((m) => serialize(m).text).join(''), 'latin1');
          const input = mutate(valid, muts);
          const whole = heraldParse([input]);
          assertNoWiderThanStrict(input, whole);
          assertSplitIndependent(input, cuts, whole);
        },
      ),
      params,
    );
  });

  it('smuggling framing (CL.TE, TE.CL, TE.TE obfuscations) never frames wider than the strict reading', () => {
    fc.assert(
      fc.property(framingArb, (f) => {
        const len = String(Math.max(0, f.body.length + f.lenDelta));
        const head = ['POST /first HTTP/1.1', 'Host: h', ...f.lines.map((l) => l.replaceAll('LEN', len))];
        const text = `${head.join('\r\n')}\r\n\r\n${f.body}GET /next HTTP/1.1\r\nHost: h\r\n\r\n`;
        const input = mutate(Buffer.from(text, 'latin1'), f.mutations);
        const whole = heraldParse([input]);
        assertNoWiderThanStrict(input, whole);
        assertSplitIndependent(input, f.cuts, whole);
        // Unmutated, the first message is always /first: a hidden request never comes first.
        if (whole.messages.length && !f.mutations.length) assert.equal(whole.messages[0]!.path, '/first');
      }),
      params,
    );
  });
});
