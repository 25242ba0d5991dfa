// HTTP/1 serialization helpers: header blocks as one string, chunked framing,
// and Envoy's date header (formatted once a second, not per response).
// Header strings are byte strings: the parser decodes bytes as latin1 and heads are written as
// latin1, so obs-text (0x80-0xFF) passes through unchanged, as in Node's http module and Envoy.
import type net from 'node:net';
import type { Headers } from '../../common/substitution-formatter.js';

/** `first` (a request or status line with CRLF) + header lines + blank line. Pseudo-headers are skipped. */
export function serializeHead(first: string, headers: Headers): string {
  return `${appendHeaderLines(first, headers, '')}\r\n`;
}

/** `out` + one `name: value` line per header value; pseudo-headers and `skip` are left out. */
export function appendHeaderLines(out: string, headers: Headers, skip: string): string {
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || k.charCodeAt(0) === 58 /* ':' */ || k === skip) continue;
    if (typeof v === 'string') out += `${k}: ${v}\r\n`;
    else for (const x of v) out += `${k}: ${x}\r\n`;
  }
  return out;
}

export const LAST_CHUNK = '0\r\n\r\n';

export function writeChunk(s: net.Socket, chunk: Buffer): boolean {
  s.cork();
  s.write(`${chunk.length.toString(16)}\r\n`);
  s.write(chunk);
  const ok = s.write('\r\n');
  s.uncork();
  return ok;
}

let cachedDate = '';
let cachedAt = 0;
export function httpDate(): string {
  const now = Date.now();
  if (now - cachedAt >= 1000 || cachedDate === '') {
    cachedAt = now - (now % 1000);
    cachedDate = new Date(cachedAt).toUTCString();
  }
  return cachedDate;
}

/**
 * A response head and the body's first bytes (with chunked framing if `chunked`, and the last
 * chunk if `last`) as one buffer: one socket write instead of a corked head, a chunk and a writev.
 * The head is a byte string (latin1), as every HTTP/1 head Herald writes.
 */
export function headWithBody(head: string, chunk: Buffer, chunked: boolean, last: boolean): Buffer {
  const size = chunked && chunk.length > 0 ? `${chunk.length.toString(16)}\r\n` : '';
  const tail = !chunked
    ? ''
    : chunk.length > 0
      ? last
        ? `\r\n${LAST_CHUNK}`
        : '\r\n'
      : last
        ? LAST_CHUNK
        : '';
  const out = Buffer.allocUnsafe(head.length + size.length + chunk.length + tail.length);
  let off = out.write(head, 0, head.length, 'latin1');
  if (size) off += out.write(size, off, 'latin1');
  off += chunk.copy(out, off);
  if (tail) out.write(tail, off, 'latin1');
  return out;
}

/** Bodies up to this size leave in one write with their head; larger ones follow it. */
export const JOIN_HEAD_MAX_BODY = 16 * 1024;

// A response head is held until its body's first bytes so both leave in one write. The body
// usually comes in the same upstream read; when the read ends (or, outside one, the tick) without
// it, the head goes out alone. This saves a process.nextTick per response.
export interface HeldHead {
  flushHead(): void;
}

let readDepth = 0;
let held: HeldHead[] = [];
let tickScheduled = false;

function flushHeld(): void {
  tickScheduled = false;
  const list = held;
  if (list.length === 0) return;
  held = [];
  for (const h of list) h.flushHead();
}

/** `h.flushHead()` runs when the current upstream read (or, outside one, the current tick) is done. */
export function holdUntilReadEnds(h: HeldHead): void {
  held.push(h);
  if (readDepth === 0 && !tickScheduled) {
    tickScheduled = true;
    process.nextTick(flushHeld);
  }
}

/** Runs `fn(arg)` as one upstream read: heads it holds are flushed when it returns. */
export function inUpstreamRead<T>(fn: (arg: T) => void, self: unknown, arg: T): void {
  readDepth++;
  try {
    fn.call(self, arg);
  } finally {
    if (--readDepth === 0 && held.length > 0) flushHeld();
  }
}
