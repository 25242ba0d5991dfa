import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamTimer } from '../../src/common/timers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('StreamTimer fires once, not before its deadline', async () => {
  const start = performance.now();
  let firedAt = 0;
  let fired = 0;
  const t = new StreamTimer(() => {
    fired++;
    firedAt = performance.now();
  });
  t.arm(40);
  assert.equal(t.armed, true);
  await sleep(80);
  assert.equal(fired, 1);
  assert.ok(firedAt - start >= 40, `fired after ${firedAt - start} ms`);
  assert.equal(t.armed, false);
});

test('StreamTimer refresh pushes the deadline back; disarm cancels', async () => {
  let fired = 0;
  const t = new StreamTimer(() => fired++);
  t.arm(150);
  await sleep(100);
  t.refresh(); // now due 150 ms from here
  await sleep(75);
  assert.equal(fired, 0, 'a refreshed timer must not fire at its old deadline');
  await sleep(150);
  assert.equal(fired, 1);
  const u = new StreamTimer(() => fired++);
  u.arm(20);
  u.disarm();
  await sleep(40);
  assert.equal(fired, 1, 'a disarmed timer must not fire');
});

test('StreamTimers of one duration fire in arm order; others are independent', async () => {
  const order: string[] = [];
  const a = new StreamTimer(() => order.push('a'));
  const b = new StreamTimer(() => order.push('b'));
  const c = new StreamTimer(() => order.push('c'));
  const short = new StreamTimer(() => order.push('short'));
  a.arm(60);
  b.arm(60);
  await sleep(5);
  c.arm(60);
  short.arm(10);
  await sleep(5);
  a.refresh(); // a moves behind c
  b.disarm();
  await sleep(150);
  assert.deepEqual(order, ['short', 'c', 'a']);
});

test('StreamTimer: re-arming later moves the deadline; earlier wins too', async () => {
  let fired = 0;
  const t = new StreamTimer(() => fired++);
  t.arm(150);
  await sleep(100);
  t.arm(150); // now due 150 ms from here
  await sleep(75);
  assert.equal(fired, 0);
  await sleep(150);
  assert.equal(fired, 1);
  t.arm(200);
  t.arm(10); // an earlier deadline needs its own wake-up
  await sleep(40);
  assert.equal(fired, 2);
  t.arm(10);
  t.disarm();
  await sleep(30);
  assert.equal(fired, 2);
});
