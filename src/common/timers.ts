// Node timers take at most 2^31-1 ms (about 24.8 days); a longer delay fires
// after 1 ms. Configured and header-supplied timeouts are clamped through here.
import { monotonicNow } from './clock.js';
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}

/**
 * Timers that move far more often than they fire (a stream's idle timeout, a route timeout, a
 * connection's idle and request-header timeouts) on shared queues, one queue per duration. Entries of one duration expire in the order they were armed, so each queue is a
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
    const now = monotonicNow();
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
    q.add(this, monotonicNow());
  }

  /** Restarts the countdown (if armed). */
  refresh(): void {
    const q = this.queue;
    if (!q) return;
    q.remove(this);
    q.add(this, monotonicNow());
  }

  disarm(): void {
    if (this.queue) this.queue.remove(this);
  }

  fire(): void {
    this.callback();
  }
}
