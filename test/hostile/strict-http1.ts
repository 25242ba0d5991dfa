// Helpers for the hostile-input tests: a reference HTTP/1.1 request framer that reads RFC 9112 as
// strictly as possible, written for clarity (strings and regexes, no incremental state) rather
// than speed, and a driver that feeds Herald's parser the way its downstream codec does.
//
// The reference is what "a strict parser sees" in the smuggling invariant: wherever Herald's
// parser completes a message, the reference must have completed the same message (same head,
// same body bytes, same trailers) at the same place. Herald may refuse more (its limits, 501 for
// unknown codings, fragments or userinfo in the target), never frame differently.
import type { Headers } from '../../src/common/substitution-formatter.js';
import { Http1Parser, ParseError, type ParserLimits } from '../../src/http/http1/parser.js';

export interface Message {
  method: string;
  path: string;
  minor: number;
  headers: Headers;
  close: boolean;
  upgrade: boolean;
  chunked: boolean;
  contentLength: number;
  /** latin1 */
  body: string;
  trailers: Headers | undefined;
}

export interface Reference {
  messages: Message[];
  /**
   * clean: every byte belongs to a complete message; incomplete: the last message needs more
   * bytes; error: malformed; unmodelled: CONNECT (its rules are Herald's, not framing).
   */
  outcome: 'clean' | 'incomplete' | 'error' | 'unmodelled';
  reason?: string;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
const CTL = /[\x00-\x08\x0a-\x1f\x7f]/; // controls other than HTAB (RFC 9110 5.5)
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
const TARGET = /^[^\x00-\x20\x7f]+$/;
/** A bare CR or a bare LF. */
const BARE = /\r(?!\n)|(?<!\r)\n/;
/** chunk-size [ BWS ";" extension text without controls ] (RFC 9112 7.1, 7.1.1). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
const CHUNK_LINE = /^([0-9A-Fa-f]+)(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?$/;

const trimOWS = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');

/** name: value (RFC 9112 5), or undefined. */
function fieldLine(line: string): [string, string] | undefined {
  const colon = line.indexOf(':');
  if (colon <= 0) return undefined;
  const name = line.slice(0, colon);
  const value = trimOWS(line.slice(colon + 1));
  if (!TOKEN.test(name) || CTL.test(value)) return undefined;
  return [name.toLowerCase(), value];
}

/** Field lines as a header map: lower-case names, repeated ones as arrays, own properties only. */
function fieldMap(lines: string[]): Map<string, string[]> | undefined {
  const map = new Map<string, string[]>();
  for (const line of lines) {
    const f = fieldLine(line);
    if (!f) return undefined;
    const list = map.get(f[0]);
    if (list) list.push(f[1]);
    else map.set(f[0], [f[1]]);
  }
  return map;
}

function toHeaders(map: Map<string, string[]>): Headers {
  const h: Headers = {};
  for (const [k, v] of map)
    Object.defineProperty(h, k, {
      value: v.length === 1 ? v[0] : v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  return h;
}

/** The strict reading of a byte stream of pipelined requests. */
export function strictParse(input: Buffer): Reference {
  const s = input.toString('latin1');
  const messages: Message[] = [];
  const stop = (outcome: Reference['outcome'], reason?: string): Reference => ({ messages, outcome, reason });
  let pos = 0;
  for (;;) {
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    while (s.startsWith('\r\n', pos)) pos += 2;
    if (pos >= s.length) return stop('clean');
    const headEnd = s.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) return stop('incomplete');
    const head = s.slice(pos, headEnd);
    if (BARE.test(head)) return stop('error', 'bare CR or LF in the head');
    const [line, ...fields] = head.split('\r\n');
    const rl = /^([^ ]+) ([^ ]+) HTTP\/1\.([01])$/.exec(line!);
    if (!rl || !TOKEN.test(rl[1]!) || !TARGET.test(rl[2]!)) return stop('error', 'request line');
    const [, method, path] = rl as unknown as [string, string, string];
    const minor = Number(rl[3]);
    if (method === 'CONNECT') return stop('unmodelled');
    const map = fieldMap(fields);
    if (!map) return stop('error', 'field line');
    if ((map.get('host')?.length ?? 0) > 1) return stop('error', 'two Host lines');
    const te = map.get('transfer-encoding');
    const cl = map.get('content-length');
    let chunked = false;
    let contentLength = -1;
    if (te) {
      if (te.length !== 1 || te[0]!.toLowerCase() !== 'chunked') return stop('error', 'transfer-encoding');
      if (cl) return stop('error', 'content-length with transfer-encoding');
      if (minor === 0) return stop('error', 'transfer-encoding in HTTP/1.0');
      chunked = true;
    } else if (cl) {
      if (cl.length !== 1 || !/^[0-9]{1,15}$/.test(cl[0]!)) return stop('error', 'content-length');
      contentLength = Number(cl[0]);
    }
    const tokens = (map.get('connection') ?? []).flatMap((v) =>
      v.split(',').map((t) => trimOWS(t).toLowerCase()),
    );

    let p = headEnd + 4;
    let body = '';
    let trailers: Headers | undefined;
    if (chunked) {
      for (;;) {
        const eol = s.indexOf('\r\n', p);
        if (eol < 0) return stop('incomplete');
        const m = CHUNK_LINE.exec(s.slice(p, eol));
        if (!m) return stop('error', 'chunk-size line');
        const size = BigInt(`0x${m[1]}`);
        if (size > BigInt(Number.MAX_SAFE_INTEGER)) return stop('error', 'chunk size overflow');
        const n = Number(size);
        p = eol + 2;
        if (n === 0) break;
        if (s.length < p + n + 2) return stop('incomplete');
        body += s.slice(p, p + n);
        p += n;
        if (!s.startsWith('\r\n', p)) return stop('error', 'no CRLF after chunk data');
        p += 2;
      }
      if (s.length < p + 2) return stop('incomplete');
      if (s.startsWith('\r\n', p)) p += 2;
      else {
        const end = s.indexOf('\r\n\r\n', p);
        if (end < 0) return stop('incomplete');
        const block = s.slice(p, end);
        const tmap = BARE.test(block) ? undefined : fieldMap(block.split('\r\n'));
        if (!tmap) return stop('error', 'trailer section');
        trailers = toHeaders(tmap);
        p = end + 4;
      }
    } else if (contentLength > 0) {
      if (s.length < p + contentLength) return stop('incomplete');
      body = s.slice(p, p + contentLength);
      p += contentLength;
    }
    messages.push({
      method,
      path,
      minor,
      headers: toHeaders(map),
      close: minor === 0 ? !tokens.includes('keep-alive') : tokens.includes('close'),
      upgrade: map.has('upgrade') && tokens.includes('upgrade'),
      chunked,
      contentLength,
      body,
      trailers,
    });
    pos = p;
  }
}

export interface HeraldParse {
  messages: Message[];
  /** The ParseError that stopped parsing, if any. */
  error: ParseError | undefined;
  /** Bytes are held waiting for the rest of a message. */
  pending: boolean;
}

export const FUZZ_LIMITS: ParserLimits = { maxHeaderBytes: 64 * 1024, maxHeaderCount: 1000 };

/**
 * Feeds `pieces` to a request parser as Herald's codec does (after a complete message: reset,
 * then the returned rest). `transient`: each piece is copied into one scratch buffer that is
 * overwritten after the call, as with direct socket reads. Anything thrown other than a
 * ParseError propagates.
 */
export function heraldParse(pieces: Buffer[], transient = false, limits = FUZZ_LIMITS): HeraldParse {
  const messages: Message[] = [];
  let current: Omit<Message, 'body' | 'trailers'> | undefined;
  let body: Buffer[] = [];
  const parser = new Http1Parser('request', limits, {
    onHead: (h) => {
      if (current) throw new Error('onHead twice without onComplete');
      current = {
        method: h.method,
        path: h.path,
        minor: h.minor,
        headers: h.headers,
        close: h.close,
        upgrade: h.upgrade,
        chunked: h.chunked,
        contentLength: h.contentLength,
      };
    },
    onBody: (c) => {
      if (!current) throw new Error('onBody before onHead');
      body.push(c);
    },
    onComplete: (trailers) => {
      if (!current) throw new Error('onComplete before onHead');
      messages.push({ ...current, body: Buffer.concat(body).toString('latin1'), trailers });
      current = undefined;
      body = [];
    },
  });
  parser.transientInput = transient;
  const scratch = Buffer.alloc(Math.max(1, ...pieces.map((p) => p.length)));
  try {
    for (const given of pieces) {
      const piece = transient ? scratch.subarray(0, given.copy(scratch)) : given;
      let rest: Buffer | undefined = piece;
      while (rest?.length) {
        rest = parser.execute(rest);
        if (!parser.messageComplete) break;
        parser.reset();
      }
      if (parser.messageComplete) parser.reset();
      if (transient) scratch.fill(0xee);
    }
  } catch (e) {
    if (e instanceof ParseError) return { messages, error: e, pending: false };
    throw e;
  }
  return { messages, error: undefined, pending: parser.inProgress };
}

/** `input` cut at `cuts` (offsets, any order, duplicates and out-of-range ones ignored). */
export function splitAt(input: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (input.length + 1)))].filter((c) => c > 0).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(input.subarray(prev, c));
    prev = c;
  }
  out.push(input.subarray(prev));
  return out;
}
