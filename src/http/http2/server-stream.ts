// Node's HTTP/2 server streams, seen through Herald's ServerStream interface.
import type http2 from 'node:http2';
import type { Headers } from '../../common/substitution-formatter.js';
import { BodySource, type ResponseSink, type ServerStream } from '../codec.js';
import { httpDate } from '../http1/serializer.js';
import { toHttp2Headers } from './headers.js';

const NGHTTP2_INTERNAL_ERROR = 2;

// respond() options; Node copies them, so they can be shared.
const END_STREAM: http2.ServerStreamResponseOptions = { endStream: true };
const NO_TRAILERS: http2.ServerStreamResponseOptions = { endStream: false, waitForTrailers: false };
const MAY_HAVE_TRAILERS: http2.ServerStreamResponseOptions = { endStream: false, waitForTrailers: true };

const EMPTY = Buffer.alloc(0);

/**
 * The adapter of a Node stream, until the stream closes. Node keeps a closed stream (and all it
 * references) alive until its last write has left the socket, often long enough to be promoted
 * to the old generation; listeners that held the adapter would drag the whole request with it
 * (ActiveStream, filters, upstream request) and leave it to the costly major GC. So listeners
 * are shared functions that find the adapter here, and the link is cut on 'close'.
 */
const kAdapter = Symbol('adapter');
type NodeStream = http2.ServerHttp2Stream & { [kAdapter]?: Http2ServerStreamAdapter };

function noop(): void {}

// Listeners shared by all streams (no closure per stream).
function onData(this: NodeStream, c: Buffer): void {
  this[kAdapter]?.onRequestData(c);
}
function onTrailers(this: NodeStream, t: http2.IncomingHttpHeaders): void {
  this[kAdapter]?.onRequestTrailers(t);
}
function onAborted(this: NodeStream): void {
  this[kAdapter]?.onAborted();
}
function onEnd(this: NodeStream): void {
  this[kAdapter]?.onRequestEnd();
}
function endBody(a: Http2ServerStreamAdapter): void {
  a.endBody();
}
function onClose(this: NodeStream): void {
  const a = this[kAdapter];
  this[kAdapter] = undefined;
  a?.onClose();
}
function onWantTrailers(this: NodeStream): void {
  this[kAdapter]?.onWantTrailers();
}
function onDrain(this: NodeStream): void {
  this[kAdapter]?.onDrained();
}
/** Response headers still held at the end of the tick: the body goes on, trailers may follow. */
function flushHead(a: Http2ServerStreamAdapter): void {
  a.flushHead();
}

export class Http2ServerStreamAdapter implements ServerStream, ResponseSink {
  readonly protocol = 'HTTP/2' as const;
  readonly headers: Headers;
  readonly body: BodySource;
  private trailers: Headers | undefined;
  private requestTrailers: Headers | undefined;
  private aborted = false;
  private finished = false;
  private drainWaiters: Array<() => void> | undefined;
  private drainListener = false;
  /** writeHeaders was called (the headers may still be held in `head`). */
  private responded = false;
  /**
   * Response headers not yet given to Node, which must be told at respond() whether trailers
   * will follow (waitForTrailers). Saying yes costs a round trip through JS and an extra frame
   * per stream, so the headers wait for the end of the tick: a response complete by then (the
   * usual small one, its head and body in one upstream read) gets END_STREAM on its last DATA.
   */
  private head: http2.OutgoingHttpHeaders | undefined;
  /** Body chunks written while the headers were held. */
  private held: Buffer[] | undefined;
  /**
   * A request without a body leaves Node's side of it unread until the stream closes, so Node
   * destroys the stream only after the last write completes. A request body read to its end lets
   * Node destroy the stream as soon as END_STREAM is sent, before that write completes, and it
   * then builds an error object per stream: dearer than the trailers round trip. So responses to
   * requests with a body keep waitForTrailers.
   */
  private bodyless = false;
  owner: { onStreamClose(complete: boolean): void } | undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    raw: http2.IncomingHttpHeaders,
    bufferLimit: number,
    /** The HEADERS frame's flags: END_STREAM (1) means a request without a body. */
    flags = 0,
    /** Told when the stream closes (the connection's idle timeout counts open streams). */
    private readonly session?: { streamClosed(): void },
  ) {
    const h: Headers = {};
    for (const k in raw) h[k] = raw[k];
    this.headers = h;
    this.body = new BodySource(
      () => stream.pause(),
      () => stream.resume(),
      bufferLimit,
    );
    const s = stream as NodeStream;
    s[kAdapter] = this;
    s.on('error', noop);
    s.on('close', onClose);
    if (flags & 1) {
      // Nothing to read: Node ends its side of the request itself when the stream closes.
      this.body.end();
      this.bodyless = true;
      return;
    }
    s.on('data', onData);
    s.on('trailers', onTrailers);
    s.on('aborted', onAborted);
    s.on('end', onEnd);
  }

  // Stream events, through the shared listeners above.

  onRequestData(c: Buffer): void {
    this.body.push(c);
  }

  onRequestTrailers(t: http2.IncomingHttpHeaders): void {
    const trailers: Headers = {};
    for (const k in t) trailers[k] = t[k];
    this.requestTrailers = trailers;
  }

  // A stream reset by the client may still emit 'end': only a clean end completes the body
  // (a reset one is torn down through 'close' instead, so nothing truncated goes upstream).
  onAborted(): void {
    this.aborted = true;
  }

  onRequestEnd(): void {
    setImmediate(endBody, this);
  }

  endBody(): void {
    if (!this.aborted && !this.stream.destroyed) this.body.end(this.requestTrailers);
  }

  onClose(): void {
    this.session?.streamClosed();
    this.drainWaiters = undefined;
    this.head = undefined;
    this.held = undefined;
    const complete = this.finished;
    this.finished = true;
    const owner = this.owner;
    this.owner = undefined;
    owner?.onStreamClose(complete);
  }

  onWantTrailers(): void {
    try {
      this.stream.sendTrailers(this.trailers ?? {});
    } catch {
      this.stream.close(NGHTTP2_INTERNAL_ERROR);
    }
  }

  onDrained(): void {
    const waiters = this.drainWaiters;
    if (!waiters) return;
    this.drainWaiters = undefined;
    for (const cb of waiters) cb();
  }

  get response(): ResponseSink {
    return this;
  }

  writeHeaders(status: number, headers: Headers, endStream: boolean): void {
    if (this.responded || this.stream.headersSent || this.stream.destroyed) return;
    this.responded = true;
    if (status === 101) {
      // An HTTP/1 upgrade accepted for an extended CONNECT (RFC 8441): HTTP/2 says 200 (Envoy's
      // transformUpgradeResponseFromH1toH2); Upgrade/Connection are dropped as connection-specific.
      status = 200;
      if (headers['content-length'] === '0') delete headers['content-length'];
    }
    const out = toHttp2Headers(headers, { ':status': status });
    if (out.date === undefined) out.date = httpDate();
    if (endStream) {
      if (this.respond(out, END_STREAM)) this.finished = true;
      return;
    }
    this.head = out;
    process.nextTick(flushHead, this);
  }

  /** The held headers go to Node; trailers may still follow. */
  flushHead(): void {
    if (this.head !== undefined) this.sendHead(true);
  }

  /** Gives the held headers (and any body held with them) to Node; false if the stream is gone. */
  private sendHead(mayHaveTrailers: boolean): boolean {
    const out = this.head!;
    this.head = undefined;
    const held = this.held;
    this.held = undefined;
    const stream = this.stream;
    if (stream.destroyed) return false;
    const trailers = mayHaveTrailers || !this.bodyless;
    // Trailers are sent when the response body ends (wantTrailers), if there are any.
    if (trailers) stream.on('wantTrailers', onWantTrailers);
    if (!this.respond(out, trailers ? MAY_HAVE_TRAILERS : NO_TRAILERS)) return false;
    if (held) for (const c of held) stream.write(c);
    return true;
  }

  private respond(out: http2.OutgoingHttpHeaders, options: http2.ServerStreamResponseOptions): boolean {
    try {
      this.stream.respond(out, options);
      return true;
    } catch {
      // Headers Node's HTTP/2 cannot encode: reset this stream, as Envoy resets a stream whose
      // headers its codec rejects.
      this.reset();
      return false;
    }
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.stream.destroyed) return true;
    if (this.head !== undefined) {
      if (!endStream) {
        (this.held ??= []).push(chunk);
        return true;
      }
      // The whole response is here: no trailers, and its body goes to Node as one write (end()
      // uncorks).
      const held = this.held;
      if (held) {
        if (chunk.length) held.push(chunk);
        chunk = EMPTY;
        this.stream.cork();
      }
      if (!this.sendHead(false)) return true;
    }
    if (endStream) {
      this.finished = true;
      this.stream.end(chunk.length ? chunk : undefined);
      return true;
    }
    return this.stream.write(chunk);
  }

  writeTrailers(trailers: Headers): void {
    if (this.stream.destroyed) return;
    const t = toHttp2Headers(trailers) as Headers;
    this.finished = true;
    // Held headers: trailers only if there are any (Node sends an empty DATA frame for none).
    if (this.head !== undefined && !this.sendHead(hasAny(t))) return;
    this.trailers = t;
    this.stream.end();
  }

  /** Waits for the next 'drain' (one shared listener, not one per wait). */
  onDrain(cb: () => void): void {
    if (this.stream.destroyed) return;
    if (this.drainWaiters) {
      this.drainWaiters.push(cb);
      return;
    }
    this.drainWaiters = [cb];
    if (!this.drainListener) {
      this.drainListener = true;
      this.stream.on('drain', onDrain);
    }
  }

  reset(): void {
    this.finished = true;
    // Held headers go first: the client sees what it would have seen without the hold.
    if (this.head !== undefined && !this.sendHead(false)) return;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}

function hasAny(h: Headers): boolean {
  for (const _ in h) return true;
  return false;
}
