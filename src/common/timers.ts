// Node timers take at most 2^31-1 ms (about 24.8 days); a longer delay fires
// after 1 ms. Configured and header-supplied timeouts are clamped through here.
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}
