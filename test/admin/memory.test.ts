// /memory answers when the resident set size cannot be read: process.memoryUsage()
// opens /proc/self/stat and throws EMFILE once the process is out of file descriptors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { memoryUsage } from '../../src/admin/memory.js';
import { type Running, request, startHerald } from '../helpers/harness.js';

function emfile(): never {
  throw Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), {
    code: 'EMFILE',
    errno: -24,
    syscall: 'uv_resident_set_memory',
  });
}

/** Runs `fn` with process.memoryUsage throwing EMFILE. */
async function withoutFds<T>(fn: () => Promise<T> | T): Promise<T> {
  const real = process.memoryUsage;
  process.memoryUsage = Object.assign(emfile, { rss: emfile }) as unknown as typeof process.memoryUsage;
  try {
    return await fn();
  } finally {
    process.memoryUsage = real;
  }
}

describe('memory figures without file descriptors', () => {
  it('memoryUsage(): heap figures from V8, the RSS last read', async () => {
    const before = memoryUsage();
    assert.ok(before.rss > 0);
    const m = await withoutFds(() => memoryUsage());
    assert.equal(m.rss, before.rss);
    assert.ok(m.heapUsed > 0 && m.heapTotal >= m.heapUsed, JSON.stringify(m));
    assert.ok(m.external >= 0);
  });

  describe('/memory', () => {
    let h: Running;
    before(async () => {
      // No stats flush timer: it reads memory too (in the server), and must not run while stubbed.
      h = await startHerald(`
stats_flush_on_admin: true
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
`);
    });
    after(() => h.stop());

    it('answers 200 with the heap figures and the last RSS known', async () => {
      const r = await withoutFds(() => request(h.adminPort, { path: '/memory' }));
      assert.equal(r.status, 200, r.body);
      const m = JSON.parse(r.body) as Record<string, string>;
      for (const k of ['allocated', 'heap_size', 'total_physical_bytes'])
        assert.ok(Number(m[k]) > 0, `${k}: ${m[k]}`);
      assert.equal(m.pageheap_unmapped, '0');
    });
  });
});
