// Exact balance while workers are replaced: connections the main process
// accepts when no worker can take them (every worker killed at once) wait for
// the replacements, and those already on their way to a worker that dies go
// to another one. None is reset.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import { httpBootstrap, staticCluster } from '../helpers/harness.js';
import { until } from './herald-child.js';

/** One request on a new connection: 'ok', or how the connection ended. */
function requestOnce(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write('GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n'),
    );
    let data = '';
    s.on('data', (c: Buffer) => {
      data += c.toString('latin1');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.on('close', () => resolve(data.startsWith('HTTP/1.1 200') ? 'ok' : `closed: ${data.slice(0, 30)}`));
    s.setTimeout(20000, () => s.destroy(new Error('timeout')));
  });
}

describe('exact balance: workers replaced under a burst', () => {
  let h: Server;
  before(async () => {
    h = await Server.create({
      configYaml: httpBootstrap({
        listenerExtra: '    connection_balance_config: { exact_balance: {} }',
        routes: `- match: { prefix: / }
  direct_response: { status: 200, body: { inline_string: ok } }`,
        clusters: staticCluster('unused', [9]),
      }),
      concurrency: 2,
    });
    await h.start();
  });
  after(async () => {
    await h.stop();
  });

  it('connections accepted while every worker is gone wait for the new ones', async () => {
    const port = h.listenerPort('main');
    assert.equal(await requestOnce(port), 'ok');
    for (let round = 0; round < 3; round++) {
      const before = h.workers!.pids();
      // Both at once: for a while no worker can take anything, and some connections of the
      // burst are already on their way to the dying ones.
      const burst = Array.from({ length: 16 }, () => requestOnce(port));
      for (const pid of before) process.kill(pid, 'SIGKILL');
      burst.push(...Array.from({ length: 16 }, () => requestOnce(port)));
      const results = await Promise.all(burst);
      // Killed before any of them connected, the old workers took none: every one is answered
      // (a connection a worker had taken would be lost with it, as in Envoy).
      assert.deepEqual(
        results.filter((r) => r !== 'ok'),
        [],
        `round ${round}`,
      );
      await until('replaced', () => {
        const now = h.workers!.pids();
        return now.every((p, i) => p !== 0 && p !== before[i]);
      });
      const after = await Promise.all(Array.from({ length: 16 }, () => requestOnce(port)));
      assert.deepEqual(
        after.filter((r) => r !== 'ok'),
        [],
      );
    }
  });
});
