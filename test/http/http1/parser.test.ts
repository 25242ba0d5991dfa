// Unit tests of Herald's incremental HTTP/1 parser (src/http/http1/parser.ts).
// Every well-formed input is fed whole, byte by byte, in several fixed-size
// pieces and split in two at every offset, and must parse the same way each
// time; malformed input must fail with the status Envoy answers with.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Headers } from '../../../src/common/substitution-formatter.js';
import {
  Http1Parser,
  type MessageHead,
  ParseError,
  type ParserLimits,
} from '../../../src/http/http1/parser.js';

const LIMITS: ParserLimits = { maxHeaderBytes: 1024, maxHeaderCount: 10 };

interface Msg {
  head: MessageHead;
  body: string;
  trailers: Headers | undefined;
}

interface Run {
  messages: Msg[];
  parser: Http1Parser;
  /** Callbacks in order: 'head', 'body:<bytes>', 'complete'. */
  events: string[];
}

/**
 * Feeds `pieces` to one parser the way Herald's codecs do: after a complete
 * message the parser is reset and the returned rest is fed again.
 * `noBody(i)` sets the HEAD flag for the i-th response.
 */
function feed(
  kind: 'request' | 'response',
  pieces: Buffer[],
  opts: { limits?: ParserLimits; noBody?: (i: number) => boolean; transient?: boolean } = {},
): Run {
  const messages: Msg[] = [];
  const events: string[] = [];
  let head: MessageHead | undefined;
  let body: Buffer[] = [];
  const parser = new Http1Parser(kind, opts.limits ?? LIMITS, {
    onHead: (h) => {
      assert.equal(head, undefined, 'onHead twice without onComplete');
      head = h;
      events.push('head');
    },
    onBody: (c) => {
      assert.ok(head, 'onBody before onHead');
      body.push(c); // kept as given: in transient mode the parser must have copied it
      events.push(`body:${c.toString('latin1')}`);
    },
    onComplete: (t) => {
      assert.ok(head, 'onComplete before onHead');
      messages.push({ head, body: Buffer.concat(body).toString('latin1'), trailers: t });
      events.push('complete');
      head = undefined;
      body = [];
    },
  });
  parser.noBody = opts.noBody?.(0) ?? false;
  // Transient mode reads as direct-read delivers: every piece lands in one scratch buffer that is
  // overwritten after the call, so whatever the parser kept without copying turns to garbage.
  parser.transientInput = opts.transient === true;
  const scratch = Buffer.alloc(Math.max(1, ...pieces.map((p) => p.length)));
  for (const given of pieces) {
    const piece = opts.transient ? scratch.subarray(0, given.copy(scratch)) : given;
    let rest: Buffer | undefined = piece;
    while (rest?.length) {
      rest = parser.execute(rest);
      if (!parser.messageComplete) {
        assert.equal(rest, undefined, 'rest returned before the message was complete');
        break;
      }
      parser.reset();
      parser.noBody = opts.noBody?.(messages.length) ?? false;
    }
    // A message can complete exactly at the end of a piece.
    if (parser.messageComplete) {
      parser.reset();
      parser.noBody = opts.noBody?.(messages.length) ?? false;
    }
    if (opts.transient) scratch.fill(0xee);
  }
  return { messages, parser, events };
}

/** The ways one input is cut into pieces: whole, byte by byte, fixed sizes, every two-way split. */
function splits(input: string): { name: string; pieces: Buffer[] }[] {
  const buf = Buffer.from(input, 'latin1');
  const out: { name: string; pieces: Buffer[] }[] = [{ name: 'whole', pieces: [buf] }];
  for (const size of [1, 2, 3, 5, 7, 13]) {
    const pieces: Buffer[] = [];
    for (let i = 0; i < buf.length; i += size) pieces.push(buf.subarray(i, i + size));
    out.push({ name: `pieces of ${size}`, pieces });
  }
  for (let i = 1; i < buf.length; i++) {
    out.push({ name: `split at ${i}`, pieces: [buf.subarray(0, i), buf.subarray(i)] });
  }
  return out;
}

/** Parses `input` every way it can be split and checks each result with `check`. */
function everySplit(
  kind: 'request' | 'response',
  input: string,
  check: (r: Run, how: string) => void,
  opts: { limits?: ParserLimits; noBody?: (i: number) => boolean } = {},
): void {
  for (const { name, pieces } of splits(input)) {
    check(feed(kind, pieces, opts), name);
    check(feed(kind, pieces, { ...opts, transient: true }), `${name}, transient`);
  }
}

function isParseError(status: number) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof ParseError, `expected a ParseError, got ${String(e)}`);
    assert.equal(e.status, status, `status for '${e.message}'`);
    return true;
  };
}

/** Malformed input must fail with `status` whether fed whole or byte by byte. */
function rejects(kind: 'request' | 'response', input: string, status: number, limits = LIMITS): void {
  const buf = Buffer.from(input, 'latin1');
  assert.throws(() => feed(kind, [buf], { limits }), isParseError(status), `whole: ${JSON.stringify(input)}`);
  const bytes = [...buf].map((b) => Buffer.from([b]));
  assert.throws(
    () => feed(kind, bytes, { limits }),
    isParseError(status),
    `bytewise: ${JSON.stringify(input)}`,
  );
}

describe('Http1Parser: requests', () => {
  it('parses the request line and headers (names lower-cased, values trimmed)', () => {
    const input =
      'GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com\r\nX-Foo:  bar baz \t\r\nX-Empty:\r\nContent-Type:text/plain\r\n\r\n';
    everySplit('request', input, (r, how) => {
      assert.equal(r.messages.length, 1, how);
      const { head, body, trailers } = r.messages[0]!;
      assert.equal(head.method, 'GET', how);
      assert.equal(head.path, '/a/b?c=d&e', how);
      assert.equal(head.minor, 1, how);
      assert.deepEqual(
        head.headers,
        { host: 'example.com', 'x-foo': 'bar baz', 'x-empty': '', 'content-type': 'text/plain' },
        how,
      );
      assert.equal(head.close, false, how);
      assert.equal(head.upgrade, false, how);
      assert.equal(head.chunked, false, how);
      assert.equal(head.contentLength, -1, how);
      assert.equal(body, '', how);
      assert.equal(trailers, undefined, how);
      assert.equal(r.parser.finish(), 'idle', how);
    });
  });

  it('keeps obs-text (bytes 0x80-0xff) in header values', () => {
    everySplit('request', 'GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n', (r, how) => {
      assert.equal(r.messages[0]?.head.headers['x-latin'], 'caf\xe9', how);
    });
  });

  it('collects repeated headers into arrays, in order, whatever their case', () => {
    const input =
      'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nX-A: 3\r\ncookie: b=2\r\n\r\n';
    everySplit('request', input, (r, how) => {
      const h = r.messages[0]!.head.headers;
      assert.deepEqual(h['x-a'], ['1', '2', '3'], how);
      assert.deepEqual(h.cookie, ['a=1', 'b=2'], how);
      assert.equal(h.host, 'h', how);
    });
  });

  it('tolerates empty lines before a request line (RFC 9112 2.2)', () => {
    everySplit('request', '\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n', (r, how) => {
      assert.equal(r.messages.length, 1, how);
      assert.equal(r.messages[0]!.head.path, '/x', how);
    });
  });

  it('reads a content-length body exactly', () => {
    everySplit(
      'request',
      'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world',
      (r, how) => {
        assert.equal(r.messages.length, 1, how);
        assert.equal(r.messages[0]!.head.contentLength, 11, how);
        assert.equal(r.messages[0]!.body, 'hello world', how);
        assert.equal(r.events[0], 'head', how);
        assert.equal(r.events[r.events.length - 1], 'complete', how);
      },
    );
  });

  it('completes a content-length: 0 request at the end of its headers', () => {
    const p = new Http1Parser('request', LIMITS, {
      onHead: () => {},
      onBody: () => assert.fail('no body expected'),
      onComplete: () => {},
    });
    assert.equal(
      p.execute(Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')),
      undefined,
    );
    assert.equal(p.messageComplete, true);
    assert.equal(p.current?.contentLength, 0);
  });

  it('does not complete a content-length body early, and reports truncation', () => {
    const r = feed('request', [Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello')]);
    assert.equal(r.messages.length, 0);
    assert.equal(r.parser.messageComplete, false);
    assert.equal(r.parser.finish(), 'truncated');
  });

  it('reads a chunked body with chunk extensions and trailers', () => {
    const input =
      'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n' +
      '6;q="x y";flag\r\n world\r\n' +
      'A\r\n0123456789\r\n' +
      '0;last=1\r\nX-Trailer: t1\r\nX-Other:t2\r\n\r\n';
    everySplit('request', input, (r, how) => {
      assert.equal(r.messages.length, 1, how);
      const m = r.messages[0]!;
      assert.equal(m.head.chunked, true, how);
      assert.equal(m.head.contentLength, -1, how);
      assert.equal(m.body, 'hello world0123456789', how);
      assert.deepEqual(m.trailers, { 'x-trailer': 't1', 'x-other': 't2' }, how);
    });
  });

  it('ends a chunked body without trailers at 0 CRLF CRLF (no trailers reported)', () => {
    const input = 'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    everySplit('request', input, (r, how) => {
      assert.equal(r.messages.length, 1, how);
      assert.equal(r.messages[0]!.body, 'abc', how);
      assert.equal(r.messages[0]!.trailers, undefined, how);
      assert.equal(r.parser.finish(), 'idle', how);
    });
  });

  it('reports a chunked body cut off mid-chunk as truncated', () => {
    const r = feed('request', [
      Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel'),
    ]);
    assert.equal(r.messages.length, 0);
    assert.equal(r.parser.finish(), 'truncated');
  });

  it('stops after a complete message and returns the pipelined rest', () => {
    const first = 'POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc';
    const second = 'GET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HT';
    let completes = 0;
    const p = new Http1Parser('request', LIMITS, {
      onHead: () => {},
      onBody: () => {},
      onComplete: () => completes++,
    });
    const rest = p.execute(Buffer.from(first + second));
    assert.equal(p.messageComplete, true);
    assert.equal(completes, 1);
    assert.equal(rest?.toString(), second);
    // A header-only message is complete too, with the rest returned.
    p.reset();
    const rest2 = p.execute(rest!);
    assert.equal(completes, 2);
    assert.equal(p.current?.path, '/2');
    assert.equal(rest2?.toString(), 'GET /3 HT');
    // The tail is kept until the message's head is complete.
    p.reset();
    assert.equal(p.execute(rest2!), undefined);
    assert.equal(p.messageComplete, false);
    assert.equal(p.inProgress, true);
    assert.equal(p.execute(Buffer.from('TP/1.1\r\nHost: h\r\n\r\n')), undefined);
    assert.equal(completes, 3);
    assert.equal(p.current?.path, '/3');
  });

  it('parses pipelined requests with bodies every way they are split', () => {
    const input =
      'POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nfirst' +
      'POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\nT: v\r\n\r\n' +
      'GET /3 HTTP/1.1\r\nHost: h\r\n\r\n' +
      'PUT /4 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nlast';
    everySplit('request', input, (r, how) => {
      assert.deepEqual(
        r.messages.map((m) => [m.head.method, m.head.path, m.body]),
        [
          ['POST', '/1', 'first'],
          ['POST', '/2', 'second'],
          ['GET', '/3', ''],
          ['PUT', '/4', 'last'],
        ],
        how,
      );
      assert.deepEqual(r.messages[1]!.trailers, { t: 'v' }, how);
      assert.equal(r.messages[2]!.trailers, undefined, how);
    });
  });

  it('HTTP/1.0 closes unless keep-alive; HTTP/1.1 keeps alive unless close', () => {
    const close = (req: string) => feed('request', [Buffer.from(`${req}\r\n\r\n`)]).messages[0]!.head;
    assert.equal(close('GET / HTTP/1.0').minor, 0);
    assert.equal(close('GET / HTTP/1.0').close, true);
    assert.equal(close('GET / HTTP/1.0\r\nConnection: keep-alive').close, false);
    assert.equal(close('GET / HTTP/1.0\r\nConnection: Keep-Alive').close, false);
    assert.equal(close('GET / HTTP/1.0\r\nConnection: close').close, true);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h').minor, 1);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h').close, false);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h\r\nConnection: close').close, true);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h\r\nConnection: Close').close, true);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h\r\nConnection: te, close').close, true);
    assert.equal(close('GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive').close, false);
  });

  it('flags an upgrade only with both Upgrade and Connection: upgrade', () => {
    const head = (req: string) => feed('request', [Buffer.from(`${req}\r\n\r\n`)]).messages[0]!.head;
    assert.equal(
      head('GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket').upgrade,
      true,
    );
    assert.equal(head('GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket').upgrade, false);
    assert.equal(head('GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade').upgrade, false);
  });

  it('finish() on a fresh or between-messages parser is idle; mid-headers is truncated', () => {
    const fresh = feed('request', []);
    assert.equal(fresh.parser.finish(), 'idle');
    const mid = feed('request', [Buffer.from('GET / HTTP/1.1\r\nHo')]);
    assert.equal(mid.parser.finish(), 'truncated');
  });

  it('finish() after only blank lines (tolerated before a message) is idle', () => {
    const r = feed('request', [Buffer.from('\r\n')]);
    assert.equal(r.parser.finish(), 'idle');
    const r2 = feed('request', [Buffer.from('\r'), Buffer.from('\n')]);
    assert.equal(r2.parser.finish(), 'idle');
  });
});

describe('Http1Parser: responses', () => {
  it('reads a response with no length until the connection closes (finish)', () => {
    const input =
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nline one\r\nline two\r\n\r\nHTTP/1.1 200 x';
    everySplit('response', input, (r, how) => {
      assert.equal(r.messages.length, 0, how);
      assert.equal(r.parser.messageComplete, false, how);
      assert.equal(r.parser.finish(), 'complete', how);
      assert.equal(r.messages.length, 1, how);
      assert.equal(r.messages[0]!.head.status, 200, how);
      assert.equal(r.messages[0]!.head.contentLength, -1, how);
      assert.equal(r.messages[0]!.body, 'line one\r\nline two\r\n\r\nHTTP/1.1 200 x', how);
    });
  });

  it('reads a response whose transfer-encoding is not chunked until close', () => {
    const r = feed('response', [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzzz')]);
    assert.equal(r.messages.length, 0);
    assert.equal(r.parser.finish(), 'complete');
    assert.equal(r.messages[0]!.body, 'zzzz');
  });

  it('parses status, reason, version and pipelined content-length and chunked responses', () => {
    const input =
      'HTTP/1.1 201 Created\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc' +
      'HTTP/1.1 404 \r\nTransfer-Encoding: chunked\r\n\r\n4;ext\r\nnope\r\n0\r\n\r\n' +
      'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok';
    everySplit('response', input, (r, how) => {
      assert.deepEqual(
        r.messages.map((m) => [m.head.status, m.head.minor, m.body]),
        [
          [201, 1, 'abc'],
          [404, 1, 'nope'],
          [200, 0, 'ok'],
        ],
        how,
      );
      assert.deepEqual(r.messages[0]!.head.headers['x-a'], ['1', '2'], how);
      assert.equal(r.messages[0]!.head.close, false, how);
      assert.equal(r.messages[2]!.head.close, true, how);
    });
  });

  it('a response to HEAD (noBody) has no body whatever its content-length says', () => {
    const input =
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n' + 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
    everySplit(
      'response',
      input,
      (r, how) => {
        assert.equal(r.messages.length, 2, how);
        assert.equal(r.messages[0]!.head.contentLength, 5, how);
        assert.equal(r.messages[0]!.body, '', how);
        assert.equal(r.messages[1]!.body, 'ok', how);
      },
      { noBody: (i) => i === 0 },
    );
  });

  it('a HEAD response with transfer-encoding: chunked or no length is still bodiless', () => {
    for (const hdr of ['Transfer-Encoding: chunked\r\n', '']) {
      const p = new Http1Parser('response', LIMITS, {
        onHead: () => {},
        onBody: () => assert.fail('no body for HEAD'),
        onComplete: () => {},
      });
      p.noBody = true;
      const rest = p.execute(Buffer.from(`HTTP/1.1 200 OK\r\n${hdr}\r\nHTTP/1.1 204 No Content\r\n\r\n`));
      assert.equal(p.messageComplete, true, hdr);
      assert.equal(rest?.toString(), 'HTTP/1.1 204 No Content\r\n\r\n', hdr);
    }
  });

  it('reset() clears noBody for the next message', () => {
    const p = new Http1Parser('response', LIMITS, {
      onHead: () => {},
      onBody: () => {},
      onComplete: () => {},
    });
    p.noBody = true;
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'));
    assert.equal(p.messageComplete, true);
    p.reset();
    assert.equal(p.noBody, false);
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n'));
    assert.equal(p.messageComplete, false);
  });

  it('a 1xx response is a complete message of its own, followed by the final response', () => {
    const input =
      'HTTP/1.1 100 Continue\r\n\r\n' +
      'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone';
    everySplit('response', input, (r, how) => {
      assert.deepEqual(
        r.messages.map((m) => [m.head.status, m.body]),
        [
          [100, ''],
          [103, ''],
          [200, 'done'],
        ],
        how,
      );
      assert.equal(r.messages[1]!.head.headers.link, '</style.css>; rel=preload', how);
    });
  });

  it('204 and 304 responses have no body even with a content-length', () => {
    const input =
      'HTTP/1.1 204 No Content\r\n\r\n' +
      'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: "x"\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz';
    everySplit('response', input, (r, how) => {
      assert.deepEqual(
        r.messages.map((m) => [m.head.status, m.body]),
        [
          [204, ''],
          [304, ''],
          [200, 'z'],
        ],
        how,
      );
    });
  });

  it('a truncated content-length response is reported as truncated, a complete one as complete', () => {
    const t = feed('response', [Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')]);
    assert.equal(t.parser.finish(), 'truncated');
    assert.equal(t.messages.length, 0);
    const p = new Http1Parser('response', LIMITS, {
      onHead: () => {},
      onBody: () => {},
      onComplete: () => {},
    });
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'));
    assert.equal(p.finish(), 'complete');
  });
});

describe('Http1Parser: errors', () => {
  it('a header block over maxHeaderBytes is 431, complete or not', () => {
    const big = `GET / HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(1100)}\r\n\r\n`;
    rejects('request', big, 431);
    // No end of headers yet: rejected once the buffered bytes pass the limit.
    rejects('request', big.slice(0, 1100), 431);
    rejects('response', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(1100)}\r\n\r\n`, 431);
    // Just under the limit is fine.
    const ok = feed('request', [
      Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(900)}\r\n\r\n`),
    ]);
    assert.equal(ok.messages.length, 1);
  });

  const BIG_TRAILERS = `POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(1100)}\r\n\r\n`;

  it('trailers arriving in pieces are 431 once they pass maxHeaderBytes', () => {
    const bytes = [...Buffer.from(BIG_TRAILERS)].map((b) => Buffer.from([b]));
    assert.throws(() => feed('request', bytes), isParseError(431));
  });

  it('a complete trailer block over maxHeaderBytes in one read is 431', () => {
    assert.throws(() => feed('request', [Buffer.from(BIG_TRAILERS)]), isParseError(431));
  });

  it('more than maxHeaderCount headers is 431', () => {
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
    rejects('request', `GET / HTTP/1.1\r\n${lines(11)}\r\n`, 431);
    const ok = feed('request', [Buffer.from(`GET / HTTP/1.1\r\n${lines(10)}\r\n`)]);
    assert.equal(ok.messages.length, 1);
  });

  it('obs-fold (a header line starting with SP or HTAB) is 400', () => {
    rejects('request', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n', 400);
    rejects('request', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n', 400);
    rejects('request', 'GET / HTTP/1.1\r\n Host: h\r\n\r\n', 400);
    rejects('response', 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n', 400);
  });

  it('a bad header name is 400', () => {
    for (const line of ['Bad Name: v', 'Host : h', 'X(y): v', ': v', 'NoColon', 'X\x01: v', 'X\xe9: v']) {
      rejects('request', `GET / HTTP/1.1\r\nHost: h\r\n${line}\r\n\r\n`, 400);
    }
  });

  it('CR, LF or NUL inside a header value is 400', () => {
    for (const value of ['a\rb', 'a\nb', 'a\0b', 'h\nX-Smuggled: 1']) {
      rejects('request', `GET / HTTP/1.1\r\nHost: h\r\nX-V: ${value}\r\n\r\n`, 400);
    }
    rejects('response', 'HTTP/1.1 200 OK\r\nX-V: a\0b\r\nContent-Length: 0\r\n\r\n', 400);
    rejects(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\0b\r\n\r\n',
      400,
    );
  });

  it('content-length together with transfer-encoding is 400', () => {
    rejects(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
      400,
    );
    rejects(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
      400,
    );
    rejects('response', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400);
  });

  it('conflicting or malformed content-lengths are 400', () => {
    for (const cl of [
      'Content-Length: 5\r\nContent-Length: 6',
      'Content-Length: 5, 6',
      'Content-Length: abc',
      'Content-Length: -1',
      'Content-Length: +5',
      'Content-Length: 0x10',
      'Content-Length: 1 2',
      'Content-Length:',
    ]) {
      rejects('request', `POST / HTTP/1.1\r\nHost: h\r\n${cl}\r\n\r\n`, 400);
    }
    rejects('response', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', 400);
  });

  it('a request transfer-encoding other than chunked is 501', () => {
    rejects('request', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n', 501);
    rejects('request', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n', 501);
    rejects('request', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 501);
  });

  it('a request transfer-encoding list ending in chunked (gzip, chunked) is 501 as in Envoy', () => {
    rejects(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      501,
    );
  });

  it('a bad chunk size or missing chunk CRLF is 400', () => {
    const pre = 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n';
    for (const body of [
      'zz\r\nhello\r\n0\r\n\r\n',
      '-5\r\nhello\r\n0\r\n\r\n',
      '\r\nhello\r\n0\r\n\r\n',
      '0x5\r\nhello\r\n0\r\n\r\n',
      '123456789abcdef01\r\n',
      '5\r\nhelloXX0\r\n\r\n',
      '5\r\nhello\n0\r\n\r\n',
    ]) {
      rejects('request', pre + body, 400);
    }
    rejects('request', `${pre}${'1'.repeat(2000)}`, 400);
    rejects('response', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnope\r\n', 400);
  });

  it('a bad request line or version is 400', () => {
    for (const line of [
      'GET / HTTP/1.2x',
      'GET / HTTP/1.x',
      'GET / HTTP/11',
      'GET / http/1.1',
      'GET / HTTX/1.1',
      'GET / HTTP/2.0',
      'GET /',
      'GET',
      ' / HTTP/1.1',
      'GET  / HTTP/1.1',
      'G(T / HTTP/1.1',
    ]) {
      rejects('request', `${line}\r\nHost: h\r\n\r\n`, 400);
    }
  });

  it('a malformed status line is 400', () => {
    for (const line of ['HTTP/1.1 OK', 'HTTP/1.1200 OK', 'HTTX/1.1 200 OK', 'HTTP/1.1 099 Low', 'garbage']) {
      rejects('response', `${line}\r\nContent-Length: 0\r\n\r\n`, 400);
    }
  });

  it('a status line without a reason phrase, or with a tab in it, is accepted', () => {
    for (const [line, status] of [
      ['HTTP/1.1 204', 204],
      ['HTTP/1.0 302 Found\there', 302],
    ] as const) {
      everySplit('response', `${line}\r\nContent-Length: 0\r\n\r\n`, (r, how) => {
        assert.equal(r.messages[0]?.head.status, status, how);
      });
    }
  });

  it('a status line with a bad version or a status that is not three digits is 400', () => {
    for (const line of [
      'HTTP/1.x 200 OK',
      'HTTP/1.1 2000 OK',
      'HTTP/1.1 1e2 OK',
      'HTTP/1.2 200 OK',
      'HTTP/1.1 20',
      'HTTP/1.1 200 O\nX-Injected: 1',
      'HTTP/1.1 200 O\x00K',
    ]) {
      rejects('response', `${line}\r\nContent-Length: 0\r\n\r\n`, 400);
    }
  });
});

// Framing that lets a second message hide inside the first (request smuggling), or that a strict
// peer reads differently: each case is rejected, whole or byte by byte, and never waits for more.
describe('Http1Parser: smuggling-resistant framing', () => {
  const CHUNKED = 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n';

  /** Throws `status` on `input` alone (no more bytes needed), fed whole or byte by byte. */
  const rejectsNow = (kind: 'request' | 'response', input: string, status = 400) =>
    rejects(kind, input, status);

  it('a control character in a chunk extension is 400 (bare LF, bare CR, NUL, DEL)', () => {
    // The tester's case: a bare LF inside the extension hid "xx" (and a request) in the size line.
    rejectsNow('request', `${CHUNKED}2;\nxx\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2;a\nGET /smuggled HTTP/1.1\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2;a\rb\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2;a\0b\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2;a\x7f\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}0;a\nb\r\n\r\n`);
    rejectsNow('response', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\nab\r\n0\r\n\r\n');
  });

  it('whitespace around a chunk size, or between it and the line end, is 400', () => {
    for (const line of [' 2', '2 ', '2\t', '\t2', ' 2 ', '2 3', '2 x']) {
      rejectsNow('request', `${CHUNKED}${line}\r\nab\r\n0\r\n\r\n`);
    }
  });

  it('a chunk line ending in a bare LF is 400 at once (no wait for a CRLF)', () => {
    rejectsNow('request', `${CHUNKED}2\n`);
    rejectsNow('request', `${CHUNKED}2;ext\n`);
    rejectsNow('request', `${CHUNKED}2\r\nab\r\n0\n`);
    rejectsNow('request', `${CHUNKED}2\rab`);
  });

  it('a chunk size that overflows, is not hex, or lacks its CRLF after the data is 400', () => {
    rejectsNow('request', `${CHUNKED}${'f'.repeat(17)}\r\n`);
    rejectsNow('request', `${CHUNKED}20000000000000\r\n`); // past 2^53
    rejectsNow('request', `${CHUNKED}g\r\n`);
    rejectsNow('request', `${CHUNKED};ext\r\n`);
    rejectsNow('request', `${CHUNKED}+2\r\nab\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2\r\nabc\r\n0\r\n\r\n`);
    rejectsNow('request', `${CHUNKED}2\r\nab\n\r\n0\r\n\r\n`);
  });

  it('accepts BWS before a chunk extension (RFC 9112 7.1.1), quoted values and leading zeros', () => {
    const input = `${CHUNKED}2 ;a=1\r\nab\r\n1\t; b="x;y \\" z"\r\nc\r\n00000000003\r\ndef\r\n0 ;last\r\n\r\n`;
    everySplit('request', input, (r, how) => {
      assert.equal(r.messages.length, 1, how);
      assert.equal(r.messages[0]!.body, 'abcdef', how);
    });
  });

  it('trailers ended by a bare LF are 400 at once', () => {
    rejectsNow('request', `${CHUNKED}0\r\n\n`);
    rejectsNow('request', `${CHUNKED}0\r\nX-T: 1\n\n`);
    rejectsNow('request', `${CHUNKED}0\r\nX-T: 1\nX-U: 2\r\n`);
  });

  it('a head whose lines end in bare LFs is 400 at once, even without an empty line', () => {
    rejectsNow('request', 'GET / HTTP/1.1\nHost: h\n\r\n');
    rejectsNow('request', 'GET / HTTP/1.1\r\nHost: h\nX: y\r\n');
  });

  it('repeated content-lengths are 400 even when equal (as Envoy), in one line or several', () => {
    for (const cl of [
      'Content-Length: 3\r\nContent-Length: 3',
      'Content-Length: 3, 3',
      'Content-Length: 3,3',
      'Content-Length: 3,',
      'content-length: 3\r\nCONTENT-LENGTH: 3',
    ]) {
      rejectsNow('request', `POST / HTTP/1.1\r\nHost: h\r\n${cl}\r\n\r\nabc`);
    }
    rejectsNow('response', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc');
  });

  it('only SP and HTAB are whitespace around framing values (not NBSP, VT or FF)', () => {
    rejectsNow('request', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xa03\r\n\r\nabc');
    rejectsNow('request', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\xa0\r\n\r\nabc');
    rejectsNow(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n',
      501,
    );
    rejectsNow(
      'request',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n',
      501,
    );
    everySplit('request', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\t 3 \t\r\n\r\nabc', (r, how) => {
      assert.equal(r.messages[0]?.body, 'abc', how);
    });
  });

  it('two Host header lines are 400 (RFC 9112 3.2)', () => {
    rejectsNow('request', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    rejectsNow('request', 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhost: a\r\n\r\n');
  });

  it('userinfo in an absolute-form target is 400 (http1.invalid_url)', () => {
    for (const target of [
      'http://user:pw@host/',
      'http://user@host',
      'HTTPS://u@h:443/x?y',
      'http://@host/',
    ]) {
      assert.throws(
        () => feed('request', [Buffer.from(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`)]),
        (e: unknown) => e instanceof ParseError && e.status === 400 && e.details === 'http1.invalid_url',
        target,
      );
    }
    // An @ in the path or query is not userinfo.
    const ok = feed('request', [Buffer.from('GET http://host/a@b?c=@ HTTP/1.1\r\nHost: h\r\n\r\n')]);
    assert.equal(ok.messages[0]?.head.path, 'http://host/a@b?c=@');
  });

  it('Connection options are matched as whole tokens, not substrings', () => {
    const head = (req: string) => feed('request', [Buffer.from(`${req}\r\n\r\n`)]).messages[0]!.head;
    const up = 'GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n';
    assert.equal(head(`${up}Connection: xupgrade`).upgrade, false);
    assert.equal(head(`${up}Connection: upgrades`).upgrade, false);
    assert.equal(head(`${up}Connection: keep-alive, Upgrade`).upgrade, true);
    assert.equal(head(`${up}Connection: keep-alive\r\nConnection: upgrade`).upgrade, true);
    assert.equal(head(`${up}Connection: \tUPGRADE\t,close`).upgrade, true);
    assert.equal(head('GET / HTTP/1.1\r\nHost: h\r\nConnection: notclose').close, false);
    assert.equal(head('GET / HTTP/1.1\r\nHost: h\r\nConnection: foo ,close ').close, true);
    assert.equal(head('GET / HTTP/1.0\r\nConnection: keep-alive-not').close, true);
  });

  it('header names that are members of Object.prototype are ordinary headers', () => {
    const own = (h: Headers, key: string) => (Object.hasOwn(h, key) ? h[key] : undefined);
    const input =
      'POST / HTTP/1.1\r\nHost: h\r\nConstructor: c\r\n__proto__: p1\r\n__PROTO__: p2\r\n' +
      'Transfer-Encoding: chunked\r\n\r\n0\r\nconstructor: t\r\n\r\n';
    everySplit('request', input, (r, how) => {
      const m = r.messages[0]!;
      assert.equal(Object.getPrototypeOf(m.head.headers), Object.prototype, how);
      assert.equal(own(m.head.headers, 'constructor'), 'c', how);
      assert.deepEqual(own(m.head.headers, '__proto__'), ['p1', 'p2'], how);
      assert.equal(own(m.trailers!, 'constructor'), 't', how);
    });
    const res = feed('response', [
      Buffer.from('HTTP/1.1 200 OK\r\n__proto__: x\r\nContent-Length: 0\r\n\r\n'),
    ]);
    const h = res.messages[0]!.head.headers;
    assert.equal(Object.getPrototypeOf(h), Object.prototype);
    assert.equal(own(h, '__proto__'), 'x');
    assert.equal(res.messages[0]!.head.contentLength, 0);
  });
});
