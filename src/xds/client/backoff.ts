// Jittered exponential backoff for xDS stream retries. Envoy's defaults for a
// management server: 500 ms base, 30 s cap (JitteredExponentialBackOffStrategy).

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  /** Source of randomness in [0, 1); injectable so tests can pin it. */
  random?: () => number;
}

export class JitteredBackoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 500;
    this.maxMs = Math.max(opts.maxMs ?? 30_000, this.baseMs);
    this.random = opts.random ?? Math.random;
  }

  /** The next delay: the ceiling doubles each failure up to maxMs; the delay is drawn from its upper half. */
  next(): number {
    const ceiling = Math.min(this.baseMs * 2 ** this.attempt, this.maxMs);
    if (ceiling < this.maxMs) this.attempt++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** After a stream delivered a response: start again from the base interval. */
  reset(): void {
    this.attempt = 0;
  }
}
