// What fails first at the file-descriptor limit, in one process: the stats
// flush (process.memoryUsage reads /proc) and libuv's accept, which reports
// EMFILE as an 'error' on the listening server once its own spare fd is gone.
// Neither may take Herald down.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  stat,
  staticCluster,
} from '../helpers/harness.js';

function emfile(syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EMFILE: too many open files, ${syscall}`), {
    code: 'EMFILE',
    errno: -24,
    syscall,
  });
}

describe('file-descriptor errors in one process', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  direct_response: { status: 200, body: { inline_string: ok } }`,
        clusters: staticCluster('unused', [9]),
      }),
    );
  });
  after(async () => {
    await h.stop();
  });

  it('a stats flush with process.memoryUsage failing (EMFILE) keeps the last resident size', async () => {
    const stats = h.server.context.stats;
    stats.flush();
    const rss = stats.gauge('server.memory_physical_size').value;
    assert.ok(rss > 0);
    const real = process.memoryUsage;
    process.memoryUsage = Object.assign(
      () => {
        throw emfile('uv_resident_set_memory');
      },
      { rss: () => 0 },
    ) as typeof process.memoryUsage;
    try {
      assert.doesNotThrow(() => stats.flush());
    } finally {
      process.memoryUsage = real;
    }
    assert.equal(stats.gauge('server.memory_physical_size').value, rss);
    assert.ok(stats.gauge('server.memory_heap_size').value > 0, 'heap figures from V8');
    assert.ok(stats.gauge('server.memory_allocated').value > 0);
  });

  it('an accept error on a listener is counted and logged, and the listener keeps accepting', async () => {
    const port = h.port();
    const server = (h.server.listeners[0] as unknown as { server: net.Server }).server;
    // What Node does when libuv's accept fails without its spare fd: no listener would be fatal.
    assert.doesNotThrow(() => server.emit('error', emfile('accept')));
    assert.doesNotThrow(() => server.emit('error', emfile('accept')));
    assert.equal(await stat(h.adminPort, `listener.127.0.0.1_${port}.downstream_cx_accept_error`), 2);
    // Accepting carries on (what libuv accepted in that same loop turn was shed).
    await new Promise((r) => setImmediate(r));
    assert.equal((await request(port)).status, 200);
  });
});
