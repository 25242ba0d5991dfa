// Node timers take at most 2^31-1 ms (about 24.8 days); a longer delay fires
// after 1 ms. Configured and header-supplied timeouts are clamped through here.
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}

/**
 * A timer for deadlines that move far more often than they expire (idle timeouts pushed back on
 * every byte, a route timeout armed on every request): arming only records the deadline, and one
 * Node timer per DeadlineTimer wakes up to check it. A Node setTimeout/clearTimeout pair per
 * request costs an allocation and a timer-list insert each time; this costs a clock read.
 */
export class DeadlineTimer {
  /** Monotonic ms at which the callback runs; 0 when disarmed. */
  private deadline = 0;
  /** When the pending Node timer fires (0 = none pending). */
  private wakeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onWake = (): void => this.wake();

  constructor(
    private readonly callback: () => void,
    /** Unref'd timers do not keep the process alive (the socket does). */
    private readonly unref = true,
  ) {}

  get armed(): boolean {
    return this.deadline !== 0;
  }

  /** Runs the callback `ms` from now (0 or less disarms). */
  arm(ms: number): void {
    if (ms <= 0) {
      this.deadline = 0;
      return;
    }
    const deadline = performance.now() + Math.min(ms, MAX_TIMER_MS);
    this.deadline = deadline;
    // A pending wake-up at or before the deadline re-checks then; only an earlier deadline
    // needs a new Node timer.
    if (this.wakeAt !== 0 && this.wakeAt <= deadline) return;
    this.schedule(deadline);
  }

  disarm(): void {
    this.deadline = 0;
  }

  /** Disarms and drops the Node timer (the owner is going away). */
  close(): void {
    this.deadline = 0;
    this.wakeAt = 0;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.wakeAt = at;
    // Node rounds sub-millisecond delays up to 1 ms; +1 so the wake-up is never early.
    const t = setTimeout(this.onWake, Math.max(1, Math.ceil(at - performance.now())));
    if (this.unref) t.unref();
    this.timer = t;
  }

  private wake(): void {
    this.timer = undefined;
    this.wakeAt = 0;
    if (this.deadline === 0) return;
    const now = performance.now();
    if (now < this.deadline) {
      this.schedule(this.deadline);
      return;
    }
    this.deadline = 0;
    this.callback();
  }
}
