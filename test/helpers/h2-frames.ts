// A raw HTTP/2 client for conformance tests (h2spec's cases, written as frames):
// it writes frames byte for byte and records every frame the server sends,
// and whether the server closed the connection.
import net from 'node:net';

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

export const Flag = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PADDED: 8, PRIORITY: 0x20 } as const;

export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  payload.copy(b, 9);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** An HPACK string literal, not Huffman-coded (7-bit prefixed length). */
function hpackString(s: string): Buffer {
  const v = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(v.length, 7, 0), v]);
}

function hpackInt(n: number, prefix: number, first: number): Buffer {
  const max = (1 << prefix) - 1;
  if (n < max) return Buffer.from([first | n]);
  const out = [first | max];
  n -= max;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** An HPACK header block of literals without indexing (new names): any bytes, as given. */
export function hpack(headers: [string, string][]): Buffer {
  return Buffer.concat(headers.flatMap(([k, v]) => [Buffer.from([0]), hpackString(k), hpackString(v)]));
}

/** An HPACK literal with incremental indexing (new name): the entry joins the dynamic table. */
export function hpackIndexed(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** The headers of a simple request. */
export function requestBlock(path = '/', method = 'GET', extra: [string, string][] = []): Buffer {
  return hpack([
    [':method', method],
    [':scheme', 'http'],
    [':path', path],
    [':authority', 'h2spec'],
    ...extra,
  ]);
}

export class RawH2 {
  readonly frames: Frame[] = [];
  closed = false;
  /** Answer the server's PINGs (a client that does not is what keepalive finds). */
  answerPings = true;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 9) {
        const len = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + len) break;
        const f: Frame = {
          type: this.buf[3]!,
          flags: this.buf[4]!,
          stream: this.buf.readUInt32BE(5) & 0x7fffffff,
          payload: this.buf.subarray(9, 9 + len),
        };
        this.buf = this.buf.subarray(9 + len);
        this.frames.push(f);
        // Acknowledge the server's SETTINGS and PINGs, as any client must (unless told not to).
        if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK) && !socket.destroyed)
          socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        if (f.type === FrameType.PING && !(f.flags & Flag.ACK) && this.answerPings && !socket.destroyed)
          socket.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
      }
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connects, sends the preface and an empty SETTINGS, and waits for the server's SETTINGS ACK. */
  static async connect(port: number, host = '127.0.0.1', answerPings = true): Promise<RawH2> {
    const socket = net.connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new RawH2(socket);
    c.answerPings = answerPings;
    socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
    await c.waitFor((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0, 3000, 'SETTINGS ACK');
    return c;
  }

  write(...frames: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(frames));
  }

  /** Resolves with the first frame (from `from` on) matching `pred`; rejects after `ms`. */
  async waitFor(pred: (f: Frame) => boolean, ms: number, what: string, from = 0): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.slice(from).find(pred);
      if (f) return f;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits until the server closes the connection; false after `ms`. */
  async waitClosed(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  /** The server's GOAWAY error code, once one arrives. */
  async goaway(ms: number): Promise<number> {
    const f = await this.waitFor((x) => x.type === FrameType.GOAWAY, ms, 'GOAWAY');
    return f.payload.readUInt32BE(4);
  }

  /** The error code of a RST_STREAM on `stream`, once one arrives. */
  async rstStream(stream: number, ms: number): Promise<number> {
    const f = await this.waitFor(
      (x) => x.type === FrameType.RST_STREAM && x.stream === stream,
      ms,
      `RST_STREAM on stream ${stream}`,
    );
    return f.payload.readUInt32BE(0);
  }

  /**
   * h2spec's verdict for "a stream error or a connection error of `code`": a RST_STREAM on
   * `stream` with that code, or a GOAWAY with it.
   */
  async streamOrConnectionError(stream: number, ms: number): Promise<{ kind: string; code: number }> {
    const f = await this.waitFor(
      (x) => (x.type === FrameType.RST_STREAM && x.stream === stream) || x.type === FrameType.GOAWAY,
      ms,
      `RST_STREAM on ${stream} or GOAWAY`,
    );
    return f.type === FrameType.GOAWAY
      ? { kind: 'GOAWAY', code: f.payload.readUInt32BE(4) }
      : { kind: 'RST_STREAM', code: f.payload.readUInt32BE(0) };
  }

  close(): void {
    this.socket.destroy();
  }
}
