// Monotonic milliseconds, read once per synchronous run of the event loop (one socket read, one
// timer) and shared by everything that runs in it: stream start and byte times, timer arming,
// upstream timings. Envoy's dispatcher hands out its loop time the same way. A clock read costs
// ~40 ns here and a request took a dozen of them; the cached value is dropped by a microtask,
// which runs as soon as the current callback returns, so it is never older than that callback.
let cached = -1;

function invalidate(): void {
  cached = -1;
}

export function monotonicNow(): number {
  if (cached < 0) {
    cached = performance.now();
    queueMicrotask(invalidate);
  }
  return cached;
}
