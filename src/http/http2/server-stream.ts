// Node's HTTP/2 server streams, seen through Herald's ServerStream interface.
import type http2 from 'node:http2';
import type { Headers } from '../../common/substitution-formatter.js';
import { BodySource, type ResponseSink, type ServerStream } from '../codec.js';
import { httpDate } from '../http1/serializer.js';
import { toHttp2Headers } from './headers.js';

const NGHTTP2_INTERNAL_ERROR = 2;

export class Http2ServerStreamAdapter implements ServerStream, ResponseSink {
  readonly protocol = 'HTTP/2' as const;
  readonly headers: Headers;
  readonly body: BodySource;
  private trailers: Headers | undefined;
  private finished = false;
  owner: { onStreamClose(complete: boolean): void } | undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    raw: http2.IncomingHttpHeaders,
    bufferLimit: number,
    /** The HEADERS frame's flags: END_STREAM (1) means a request without a body. */
    flags = 0,
  ) {
    const h: Headers = {};
    for (const k of Object.keys(raw)) h[k] = raw[k];
    this.headers = h;
    this.body = new BodySource(
      () => stream.pause(),
      () => stream.resume(),
      bufferLimit,
    );
    stream.on('data', (c: Buffer) => this.body.push(c));
    if (flags & 1) this.body.end();
    let requestTrailers: Headers | undefined;
    stream.once('trailers', (t: http2.IncomingHttpHeaders) => {
      requestTrailers = {};
      for (const k of Object.keys(t)) requestTrailers[k] = t[k];
    });
    // A stream reset by the client may still emit 'end': only a clean end completes the body
    // (a reset one is torn down through 'close' instead, so nothing truncated goes upstream).
    let aborted = false;
    stream.once('aborted', () => {
      aborted = true;
    });
    stream.once('end', () =>
      setImmediate(() => {
        if (!aborted && !stream.destroyed) this.body.end(requestTrailers);
      }),
    );
    stream.on('error', () => {});
    stream.once('close', () => {
      const complete = this.finished;
      this.finished = true;
      const owner = this.owner;
      this.owner = undefined;
      owner?.onStreamClose(complete);
    });
    // Trailers are sent when the response body ends (wantTrailers), if there are any.
    stream.on('wantTrailers', () => {
      try {
        stream.sendTrailers(this.trailers ?? {});
      } catch {
        stream.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  get response(): ResponseSink {
    return this;
  }

  writeHeaders(status: number, headers: Headers, endStream: boolean): void {
    if (this.stream.headersSent || this.stream.destroyed) return;
    if (status === 101) {
      // An HTTP/1 upgrade accepted for an extended CONNECT (RFC 8441): HTTP/2 says 200 (Envoy's
      // transformUpgradeResponseFromH1toH2); Upgrade/Connection are dropped as connection-specific.
      status = 200;
      if (headers['content-length'] === '0') delete headers['content-length'];
    }
    const out = toHttp2Headers(headers, { ':status': status });
    if (out.date === undefined) out.date = httpDate();
    try {
      this.stream.respond(out, { endStream, waitForTrailers: !endStream });
    } catch {
      // Headers Node's HTTP/2 cannot encode: reset this stream, as Envoy resets a stream whose
      // headers its codec rejects.
      this.reset();
      return;
    }
    if (endStream) this.finished = true;
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.stream.destroyed) return true;
    if (endStream) {
      this.finished = true;
      this.stream.end(chunk.length ? chunk : undefined);
      return true;
    }
    return this.stream.write(chunk);
  }

  writeTrailers(trailers: Headers): void {
    if (this.stream.destroyed) return;
    this.trailers = toHttp2Headers(trailers) as Headers;
    this.finished = true;
    this.stream.end();
  }

  onDrain(cb: () => void): void {
    this.stream.once('drain', cb);
  }

  reset(): void {
    this.finished = true;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }
}
