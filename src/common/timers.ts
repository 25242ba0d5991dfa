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

/**
 * Per-stream timers (a stream's idle timeout, a route timeout) on shared queues, one queue per
 * duration. Entries of one duration expire in the order they were armed, so each queue is a
 * linked list sorted by deadline: arming, refreshing and disarming are O(1) link changes and one
 * Node timer per queue wakes up for its head. A Node setTimeout per request costs an object with
 * async-hook ids, a timer-list insert and a clock call into C++; this costs a clock read.
 */
class TimerQueue {
  head: StreamTimer | null = null;
  tail: StreamTimer | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly onWake = (): void => this.wake();

  constructor(readonly ms: number) {}

  add(t: StreamTimer, now: number): void {
    t.at = now + this.ms;
    t.queue = this;
    t.prev = this.tail;
    t.next = null;
    if (this.tail) this.tail.next = t;
    else this.head = t;
    this.tail = t;
    if (!this.timer) this.schedule(t.at, now);
  }

  remove(t: StreamTimer): void {
    if (t.prev) t.prev.next = t.next;
    else this.head = t.next;
    if (t.next) t.next.prev = t.prev;
    else this.tail = t.prev;
    t.prev = t.next = t.queue = null;
  }

  private schedule(at: number, now: number): void {
    // Rounded up: Node's timers have millisecond resolution and must not wake early.
    const t = setTimeout(this.onWake, Math.max(1, Math.ceil(at - now)));
    t.unref(); // the connection keeps the process alive, not its timers
    this.timer = t;
  }

  private wake(): void {
    this.timer = undefined;
    const now = performance.now();
    let t = this.head;
    while (t && t.at <= now) {
      this.remove(t);
      t.fire();
      t = this.head;
    }
    // A callback may have armed a new head (and a timer) already.
    if (this.head) {
      if (!this.timer) this.schedule(this.head.at, now);
    } else if (!this.timer && queues.get(this.ms) === this) {
      // Durations can come from request headers: an empty queue is not kept.
      queues.delete(this.ms);
    }
  }
}

const queues = new Map<number, TimerQueue>();

export class StreamTimer {
  prev: StreamTimer | null = null;
  next: StreamTimer | null = null;
  queue: TimerQueue | null = null;
  at = 0;

  constructor(private readonly callback: () => void) {}

  get armed(): boolean {
    return this.queue !== null;
  }

  /** Runs the callback `ms` from now; 0 or less disarms. */
  arm(ms: number): void {
    if (this.queue) this.queue.remove(this);
    if (ms <= 0) return;
    const d = Math.min(ms, MAX_TIMER_MS);
    let q = queues.get(d);
    if (!q) queues.set(d, (q = new TimerQueue(d)));
    q.add(this, performance.now());
  }

  /** Restarts the countdown (if armed). */
  refresh(): void {
    const q = this.queue;
    if (!q) return;
    q.remove(this);
    q.add(this, performance.now());
  }

  disarm(): void {
    if (this.queue) this.queue.remove(this);
  }

  fire(): void {
    this.callback();
  }
}
