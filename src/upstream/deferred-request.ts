// An upstream request that has no connection yet (waiting in a pool's pending
// queue, or for auto_config's protocol probe). Operations wait in order and
// are replayed on the real request once it is attached. While waiting it
// applies backpressure: sendData holds the chunk and returns false, and drain
// callbacks fire once the real request can take data.
import type { Headers } from '../common/substitution-formatter.js';
import type {
  NewStreamOptions,
  UpstreamCallbacks,
  UpstreamConnectionInfo,
  UpstreamRequest,
} from './upstream-request.js';

type Op = (r: UpstreamRequest) => void;

export class DeferredRequest implements UpstreamRequest {
  private real: UpstreamRequest | undefined;
  private ops: Op[] = [];
  private drainWaiters: Array<() => void> = [];
  aborted = false;

  constructor(
    readonly headers: Headers,
    readonly opts: NewStreamOptions,
    readonly cb: UpstreamCallbacks,
    /** Called when the request is cancelled while still waiting. */
    private readonly onCancel: (r: DeferredRequest) => void,
  ) {}

  get started(): boolean {
    return this.real?.started ?? false;
  }

  connectionInfo(): UpstreamConnectionInfo | undefined {
    return this.real?.connectionInfo?.();
  }

  attach(r: UpstreamRequest): void {
    this.real = r;
    const ops = this.ops;
    this.ops = [];
    for (const op of ops) op(r);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) r.onDrain(w);
  }

  sendData(chunk: Buffer, endStream: boolean): boolean {
    if (this.real) return this.real.sendData(chunk, endStream);
    // Held until the connection exists: copied (the caller may reuse its buffer) and the sender told to wait.
    const c = Buffer.from(chunk);
    this.ops.push((r) => r.sendData(c, endStream));
    return false;
  }

  sendTrailers(t: Headers): void {
    if (this.real) this.real.sendTrailers(t);
    else this.ops.push((r) => r.sendTrailers(t));
  }

  onDrain(cb: () => void): void {
    if (this.real) this.real.onDrain(cb);
    else this.drainWaiters.push(cb);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    if (this.real) this.real.abort();
    else this.onCancel(this);
  }

  pauseResponse(): void {
    if (this.real) this.real.pauseResponse();
    else this.ops.push((r) => r.pauseResponse());
  }

  resumeResponse(): void {
    if (this.real) this.real.resumeResponse();
    else this.ops.push((r) => r.resumeResponse());
  }
}

/** A request that failed before it started (overflow, unsendable headers): it takes nothing. */
export const NOOP_REQUEST: UpstreamRequest = {
  started: false,
  sendData: () => true,
  sendTrailers: () => {},
  onDrain: (cb) => queueMicrotask(cb),
  abort: () => {},
  pauseResponse: () => {},
  resumeResponse: () => {},
};
