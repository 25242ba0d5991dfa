// What the HTTP connection manager sees of a request, whatever the codec
// (Herald's HTTP/1 codec or Node's HTTP/2): Envoy-shaped request headers, a
// body source with backpressure, and a response sink.
import type { Headers } from '../common/substitution-formatter.js';

export interface BodyObserver {
  onBodyActivity(): void;
  onBodyEnd(): void;
}

/** A request or response body arriving in pieces. Data is held until a consumer attaches. */
export class BodySource {
  private onDataCb: ((chunk: Buffer) => void) | undefined;
  private onEndCb: ((trailers: Headers | undefined) => void) | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private endedWith: { trailers: Headers | undefined } | undefined;
  private delivered = false;
  bytes = 0;
  /** Observer for the stream's timers: any data, and the end of the body. */
  observer: BodyObserver | undefined;

  constructor(
    /** Stop the producer (socket or HTTP/2 stream) from reading. */
    private readonly pauseProducer: () => void,
    private readonly resumeProducer: () => void,
    /** Held bytes above which the producer is paused until a consumer attaches. */
    private readonly holdLimit: number,
  ) {}

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  /** Called by the codec. */
  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.observer?.onBodyActivity();
    if (this.onDataCb) {
      this.onDataCb(chunk);
      return;
    }
    // Held data may be a view of the socket's buffer: copy it, since it outlives the read.
    this.held.push(Buffer.from(chunk));
    this.heldBytes += chunk.length;
    if (this.heldBytes > this.holdLimit) this.pauseProducer();
  }

  /** Called by the codec. */
  end(trailers?: Headers): void {
    if (this.endedWith) return;
    this.endedWith = { trailers };
    this.observer?.onBodyEnd();
    if (this.onEndCb && this.held.length === 0) {
      this.delivered = true;
      this.onEndCb(trailers);
    }
  }

  /** Attaches the consumer; held data is delivered at once. */
  consume(onData: (chunk: Buffer) => void, onEnd: (trailers: Headers | undefined) => void): void {
    this.onDataCb = onData;
    this.onEndCb = onEnd;
    const held = this.held;
    this.held = [];
    const hadHeld = this.heldBytes > 0;
    this.heldBytes = 0;
    for (const c of held) onData(c);
    if (hadHeld) this.resumeProducer();
    if (this.endedWith && !this.delivered) {
      this.delivered = true;
      onEnd(this.endedWith.trailers);
    }
  }

  pause(): void {
    this.pauseProducer();
  }

  resume(): void {
    this.resumeProducer();
  }

  /** Drops the body (the request is answered without reading it). */
  discard(): void {
    this.consume(
      () => {},
      () => {},
    );
  }
}

export interface ResponseSink {
  writeHeaders(status: number, headers: Headers, endStream: boolean): void;
  /** Returns false when the client is not keeping up; wait for onDrain. */
  writeData(chunk: Buffer, endStream: boolean): boolean;
  writeTrailers(trailers: Headers): void;
  onDrain(cb: () => void): void;
  /** Abort the response: HTTP/1 closes the connection, HTTP/2 resets the stream. */
  reset(): void;
}

export interface ServerStream {
  readonly protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
  /** Request headers with :method, :path, :authority, :scheme. */
  readonly headers: Headers;
  readonly body: BodySource;
  readonly response: ResponseSink;
  /**
   * The stream's owner (the connection manager's stream), told once when the stream ends:
   * `complete` false if the client went away first.
   */
  owner: { onStreamClose(complete: boolean): void } | undefined;
}
