// Request ids and random bytes from the pooled /dev/urandom reader.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBytes, randomUUID } from '../../src/common/random.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('random ids', () => {
  it('randomUUID gives distinct version 4 UUIDs across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = randomUUID();
      assert.match(id, UUID_V4);
      seen.add(id);
    }
    assert.equal(seen.size, 2000);
  });

  it('randomBytes gives the length asked for, including more than the pool holds', () => {
    for (const n of [1, 8, 16, 4096, 5000]) assert.equal(randomBytes(n).length, n);
    assert.notDeepEqual(randomBytes(16), randomBytes(16));
  });
});
