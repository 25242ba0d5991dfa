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
