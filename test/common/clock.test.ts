// The cached monotonic clock: one reading per callback, never older than that callback.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { monotonicNow, withClock } from '../../src/common/clock.js';

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('monotonicNow', () => {
  it('is read once per synchronous run and afresh after it (microtask)', async () => {
    const a = monotonicNow();
    spin(3);
    assert.equal(monotonicNow(), a, 'the value changed within one synchronous run');
    await Promise.resolve();
    assert.ok(monotonicNow() >= a + 3, 'the value was not refreshed after the run');
  });

  it('withClock reads afresh on entry and drops the value on exit', () => {
    const before = monotonicNow();
    spin(3);
    let inside = 0;
    withClock(() => {
      inside = monotonicNow();
      spin(3);
      assert.equal(monotonicNow(), inside);
      // Nested scopes share the outer reading.
      withClock(() => assert.equal(monotonicNow(), inside), undefined);
    }, undefined);
    assert.ok(inside >= before + 3, 'a stale value was used inside withClock');
    spin(3);
    assert.ok(monotonicNow() >= inside + 3, 'the value read inside withClock outlived it');
  });

  it('a callback that throws does not leave the clock frozen', async () => {
    assert.throws(() =>
      withClock(() => {
        monotonicNow();
        throw new Error('boom');
      }, undefined),
    );
    const a = monotonicNow();
    await Promise.resolve();
    spin(3);
    assert.ok(monotonicNow() >= a + 3, 'the clock stayed frozen after a throw');
  });
});
