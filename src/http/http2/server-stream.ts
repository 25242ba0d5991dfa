// Node's HTTP/2 server streams, seen through Herald's ServerStream interface.
import type http2 from 'node:http2';
import type { Headers } from '../../common/substitution-formatter.js';
import { BodySource, type ResponseSink, type ServerStream } from '../codec.js';
import { httpDate } from '../http1/serializer.js';

const NGHTTP2_INTERNAL_ERROR = 2;

export class Http2ServerStreamAdapter implements ServerStream, ResponseSink {
  readonly protocol = 'HTTP/2' as const;
  readonly headers: Headers;
  readonly body: BodySource;
  private trailers: Headers | undefined;
  private finished = false;
  private closeCbs: Array<(complete: boolean) => void> = [];

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    raw: http2.IncomingHttpHeaders,
    bufferLimit: number,
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
    let requestTrailers: Headers | undefined;
    stream.once('trailers', (t: http2.IncomingHttpHeaders) => {
      requestTrailers = {};
      for (const k of Object.keys(t)) requestTrailers[k] = t[k];
    });
    stream.once('end', () => this.body.end(requestTrailers));
    stream.on('error', () => {});
    stream.once('close', () => {
      const complete = this.finished;
      this.finished = true;
      for (const cb of this.closeCbs) cb(complete);
      this.closeCbs = [];
    });
    // Trailers are sent when the response body ends (wantTrailers), if there are any.
    stream.on('wantTrailers', () => stream.sendTrailers(this.trailers ?? {}));
  }

  get response(): ResponseSink {
    return this;
  }

  onClose(cb: (complete: boolean) => void): void {
    this.closeCbs.push(cb);
  }

  writeHeaders(status: number, headers: Headers, endStream: boolean): void {
    if (this.stream.headersSent || this.stream.destroyed) return;
    const out: http2.OutgoingHttpHeaders = { ':status': status };
    for (const k in headers) {
      // Connection-specific headers are not allowed in HTTP/2.
      if (k.charCodeAt(0) === 58 || k === 'connection' || k === 'transfer-encoding' || k === 'keep-alive')
        continue;
      out[k] = headers[k];
    }
    if (out.date === undefined) out.date = httpDate();
    this.stream.respond(out, { endStream, waitForTrailers: !endStream });
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
    const t: Headers = {};
    for (const k in trailers) if (k.charCodeAt(0) !== 58) t[k] = trailers[k];
    this.trailers = t;
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
