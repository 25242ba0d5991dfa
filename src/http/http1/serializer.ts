// HTTP/1 serialization helpers: header blocks as one string, chunked framing,
// and Envoy's date header (formatted once a second, not per response).
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

// Response heads are corked so a head and the body that follows in the same tick leave in one
// writev. While an upstream read is being handled (the usual source of both), the uncork happens
// when that read is done; otherwise on the next tick. This saves a process.nextTick per response.
let readDepth = 0;
let corked: net.Socket[] = [];
let tickScheduled = false;

function flushCorked(): void {
  tickScheduled = false;
  const list = corked;
  if (list.length === 0) return;
  corked = [];
  for (const s of list) s.uncork();
}

/** Corks `s` until the current upstream read (or, outside one, the current tick) is done. */
export function corkForResponse(s: net.Socket): void {
  s.cork();
  corked.push(s);
  if (readDepth === 0 && !tickScheduled) {
    tickScheduled = true;
    process.nextTick(flushCorked);
  }
}

/** Runs `fn(arg)` as one upstream read: responses it corks are flushed when it returns. */
export function inUpstreamRead<T>(fn: (arg: T) => void, self: unknown, arg: T): void {
  readDepth++;
  try {
    fn.call(self, arg);
  } finally {
    if (--readDepth === 0 && corked.length > 0) flushCorked();
  }
}
