// Raw-socket HTTP/1 helpers for codec and pool tests: an upstream built on
// `net` that records every connection and request (so tests can see reuse,
// FINs and resets), a small response reader for raw clients, and polling.
import net from 'node:net';

export interface RawRequest {
  /** Index of the upstream connection it arrived on (accept order). */
  conn: number;
  /** Index of the request on that connection. */
  index: number;
  method: string;
  path: string;
  /** Header names lower-cased; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** The request head exactly as received. */
  head: string;
  body: Buffer;
}

export interface RawConn {
  index: number;
  socket: net.Socket;
  /** Every byte received, in order. */
  received: Buffer[];
  requests: number;
  /** The proxy sent its FIN. */
  ended: boolean;
  closed: boolean;
}

export interface RawUpstream {
  port: number;
  conns: RawConn[];
  requests: RawRequest[];
  close(): Promise<void>;
}

export type RawHandler = (req: RawRequest, socket: net.Socket, conn: RawConn) => void;

/** A raw HTTP/1.1 upstream: parses requests (content-length or chunked bodies) and calls `handler` for each. */
export async function startRawUpstream(handler: RawHandler): Promise<RawUpstream> {
  const conns: RawConn[] = [];
  const requests: RawRequest[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const conn: RawConn = {
      index: conns.length,
      socket,
      received: [],
      requests: 0,
      ended: false,
      closed: false,
    };
    conns.push(conn);
    let buf = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('end', () => {
      conn.ended = true;
      socket.end();
    });
    socket.on('close', () => {
      conn.closed = true;
    });
    socket.on('data', (c: Buffer) => {
      conn.received.push(c);
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const parsed = parseRequest(buf);
        if (!parsed) return;
        buf = buf.subarray(parsed.consumed);
        const req: RawRequest = { conn: conn.index, index: conn.requests++, ...parsed.req };
        requests.push(req);
        handler(req, socket, conn);
        if (socket.destroyed) return;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    requests,
    close: async () => {
      for (const c of conns) c.socket.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** One complete request at the start of `buf`, or undefined when more bytes are needed. */
function parseRequest(
  buf: Buffer,
): { req: Omit<RawRequest, 'conn' | 'index'>; consumed: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = buf.toString('latin1', 0, end);
  const [first, ...lines] = head.split('\r\n');
  const [method = '', path = ''] = (first ?? '').split(' ');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const k = line.slice(0, colon).trim().toLowerCase();
    const v = line.slice(colon + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  let off = end + 4;
  let body = Buffer.alloc(0);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', off);
      if (eol < 0) return undefined;
      const size = Number.parseInt(buf.toString('latin1', off, eol).split(';')[0]!, 16);
      off = eol + 2;
      if (size === 0) {
        // Trailers (if any) end with an empty line.
        const tEnd = buf.indexOf('\r\n', off);
        if (tEnd < 0) return undefined;
        if (tEnd === off) off += 2;
        else {
          const blockEnd = buf.indexOf('\r\n\r\n', off);
          if (blockEnd < 0) return undefined;
          off = blockEnd + 4;
        }
        break;
      }
      if (buf.length < off + size + 2) return undefined;
      parts.push(buf.subarray(off, off + size));
      off += size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (buf.length < off + n) return undefined;
    body = Buffer.from(buf.subarray(off, off + n));
    off += n;
  }
  return { req: { method, path, headers, head, body }, consumed: off };
}

/** `HTTP/1.1 <status>` with the given header lines and a content-length body. */
export function response(status: number, body = '', headers: string[] = []): string {
  return `HTTP/1.1 ${status} X\r\n${[...headers, `Content-Length: ${Buffer.byteLength(body)}`].join('\r\n')}\r\n\r\n${body}`;
}

export interface ParsedResponse {
  status: number;
  /** Header names lower-cased; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** Header lines as received (name: value). */
  rawHeaders: string[];
  body: string;
}

/**
 * Splits raw bytes read by a client into complete responses (content-length,
 * chunked, or bodiless for 1xx/204/304/HEAD when `head` says so); a final
 * response without length takes the rest.
 */
export function parseResponses(data: Buffer | string, headRequests: boolean[] = []): ParsedResponse[] {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const out: ParsedResponse[] = [];
  let off = 0;
  let n = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const [first, ...lines] = buf.toString('latin1', off, end).split('\r\n');
    const status = Number((first ?? '').split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      const k = line.slice(0, colon).trim().toLowerCase();
      const v = line.slice(colon + 1).trim();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    off = end + 4;
    let body = '';
    const informational = status >= 100 && status < 200;
    if (informational || status === 204 || status === 304 || headRequests[n]) {
      // no body
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        const eol = buf.indexOf('\r\n', off);
        if (eol < 0) return out;
        const size = Number.parseInt(buf.toString('latin1', off, eol), 16);
        off = eol + 2;
        if (size === 0) {
          const blockEnd = buf.indexOf('\r\n', off);
          off = blockEnd === off ? off + 2 : buf.indexOf('\r\n\r\n', off) + 4;
          break;
        }
        parts.push(buf.subarray(off, off + size));
        off += size + 2;
      }
      body = Buffer.concat(parts).toString('latin1');
    } else if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length']);
      body = buf.toString('latin1', off, off + len);
      off += len;
    } else {
      body = buf.toString('latin1', off);
      off = buf.length;
    }
    out.push({ status, headers, rawHeaders: lines, body });
    if (!informational) n++;
  }
  return out;
}

/** Polls `cond` every 10 ms; rejects with `what` after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A raw client connection that collects what it reads. */
export interface RawClient {
  socket: net.Socket;
  data(): Buffer;
  closed: boolean;
  /** Resolves once `cond(data)` holds; rejects after `timeoutMs`. */
  waitData(cond: (text: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  /** Resolves once the peer closed; rejects after `timeoutMs`. */
  waitClosed(timeoutMs: number): Promise<void>;
  destroy(): void;
}

export function rawClient(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const c: RawClient = {
      socket,
      data: () => Buffer.concat(chunks),
      closed: false,
      waitData: async (cond, timeoutMs, what) => {
        await waitFor(() => cond(c.data().toString('latin1')), timeoutMs, what);
        return c.data().toString('latin1');
      },
      waitClosed: (timeoutMs) => waitFor(() => c.closed, timeoutMs, 'the connection to close'),
      destroy: () => socket.destroy(),
    };
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => {
      c.closed = true;
    });
    socket.on('close', () => {
      c.closed = true;
    });
    socket.on('error', () => {});
    socket.once('connect', () => resolve(c));
    socket.once('error', reject);
  });
}

/** Rejects with `what` when `p` has not settled within `timeoutMs`. */
export function withTimeout<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}
