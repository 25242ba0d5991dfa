// Exact balance while workers start: the port accepts (the kernel completes
// the handshake) before any worker is ready. A burst of clients arriving then
// is neither reset nor piled onto the first worker to come up: it waits, and
// spreads over both workers once they are ready. The kernel-balanced listener
// next to it is the control.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  childStat,
  directListener,
  freePorts,
  type HeraldChild,
  spawnHerald,
  until,
} from './herald-child.js';

const CLIENTS = 64;

interface Held {
  socket: net.Socket;
  /** The response, or the error the connection ended with. */
  result: Promise<string>;
}

/** Connects and sends one request; the connection stays open after its response. */
function holdOne(port: number): Held {
  const socket = net.connect(port, '127.0.0.1');
  const result = new Promise<string>((resolve) => {
    let data = '';
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n'));
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      if (data.includes('\r\n\r\nok')) resolve('ok');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    socket.on('close', () => resolve(data ? `closed after: ${data.slice(0, 40)}` : 'closed'));
    socket.setTimeout(20000, () => socket.destroy(new Error('timeout')));
  });
  return { socket, result };
}

/** Tries to connect until the port takes a connection (bounded): the first of the burst. */
async function firstConnection(port: number): Promise<Held> {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    const s = net.connect(port, '127.0.0.1');
    const ok = await new Promise<boolean>((resolve) => {
      s.once('connect', () => resolve(true));
      s.once('error', () => resolve(false));
    });
    if (ok) {
      s.destroy();
      return holdOne(port);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error('the port never accepted');
}

describe('exact balance: a burst at start-up', () => {
  let h: HeraldChild;
  let exact: number;
  let kernel: number;
  let admin: number;
  const held: Held[] = [];
  before(async () => {
    [exact, kernel, admin] = (await freePorts(3)) as [number, number, number];
    h = spawnHerald(
      `
admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${admin} } } }
static_resources:
  listeners:
${directListener('exact', exact, '    connection_balance_config: { exact_balance: {} }')}
${directListener('kernel', kernel)}
`,
      ['--concurrency', '2', '--log-level', 'error'],
    );
  });
  after(async () => {
    for (const c of held) c.socket.destroy();
    await h.stop();
  });

  it(`${CLIENTS} clients connecting as the port opens: no resets, spread over both workers`, async () => {
    const first = await firstConnection(exact);
    const burst = [first, ...Array.from({ length: CLIENTS - 1 }, () => holdOne(exact))];
    const firstK = await firstConnection(kernel);
    const control = [firstK, ...Array.from({ length: CLIENTS - 1 }, () => holdOne(kernel))];
    held.push(...burst, ...control);
    const results = await Promise.all(burst.map((c) => c.result));
    const controlResults = await Promise.all(control.map((c) => c.result));
    const failed = (r: string[]) => r.filter((x) => x !== 'ok');
    assert.deepEqual(failed(controlResults), [], 'kernel-balanced listener');
    assert.deepEqual(failed(results), [], 'exact-balance listener');
    assert.ok(h.alive());
    // The connections are still open: each worker holds its share.
    let w0 = 0;
    let w1 = 0;
    await until('both workers counted', async () => {
      w0 = (await childStat(admin, `listener.127.0.0.1_${exact}.worker_0.downstream_cx_active`)) ?? 0;
      w1 = (await childStat(admin, `listener.127.0.0.1_${exact}.worker_1.downstream_cx_active`)) ?? 0;
      return w0 + w1 === CLIENTS;
    });
    assert.ok(w0 >= CLIENTS / 4 && w1 >= CLIENTS / 4, `worker_0=${w0} worker_1=${w1}`);
  });
});
