// Herald at its file-descriptor limit: a client opens connections until Herald
// can take no more, keeps them open across several stats flushes, then lets
// them go. Herald must still be alive, must have served the connections it
// took, must have counted the ones it could not take, and must accept again.
// One process, and a main process handing connections to two workers (exact
// balance), each under the same low limit.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  childStat,
  directListener,
  freePorts,
  get,
  type HeraldChild,
  hasPrlimit,
  spawnHerald,
  until,
} from '../server/herald-child.js';

/** Low enough to reach with a few hundred connections, high enough to start. */
const NOFILE = 96;
const MAX_CONNECTIONS = 600;

interface Opened {
  socket: net.Socket;
  /** Closed by Herald before the client sent anything: not accepted. */
  closedByPeer: boolean;
}

/** Opens connections one after another until Herald has closed `enough` of them at once. */
async function exhaust(port: number, enough: number): Promise<Opened[]> {
  const opened: Opened[] = [];
  let refused = 0;
  for (let i = 0; i < MAX_CONNECTIONS && refused < enough; i++) {
    const socket = net.connect(port, '127.0.0.1');
    const o: Opened = { socket, closedByPeer: false };
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!o.closedByPeer) refused++;
      o.closedByPeer = true;
    });
    await new Promise<void>((resolve) => {
      socket.once('connect', () => resolve());
      socket.once('close', () => resolve());
    });
    opened.push(o);
  }
  return opened;
}

/** One request on an open connection; resolves with the status line or what went wrong. */
function ask(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const onData = (c: Buffer) => {
      data += c.toString('latin1');
      if (data.includes('\r\n\r\nok')) done(data.slice(0, data.indexOf('\r\n')));
    };
    const onClose = () => done(`closed (${data.length} bytes)`);
    const t = setTimeout(() => done('timeout'), 5000);
    function done(r: string): void {
      clearTimeout(t);
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(r);
    }
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
  });
}

for (const mode of ['one process', 'two workers, exact balance'] as const)
  describe(`file descriptors exhausted (${mode})`, {
    skip: !hasPrlimit && 'needs prlimit (util-linux)',
  }, () => {
    let h: HeraldChild;
    let port: number;
    let admin: number;
    before(async () => {
      [port, admin] = (await freePorts(2)) as [number, number];
      const workers = mode !== 'one process';
      h = spawnHerald(
        `
admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${admin} } } }
stats_flush_interval: 0.1s
static_resources:
  listeners:
${directListener('main', port, workers ? '    connection_balance_config: { exact_balance: {} }' : '')}
`,
        ['--concurrency', workers ? '2' : '1', '--log-level', 'warning'],
        { nofile: NOFILE },
      );
      await until('serving', async () => (await get(port).catch(() => undefined))?.status === 200);
    });
    after(async () => {
      await h.stop();
    });

    it('survives, serves what it took, counts what it could not, and accepts again', async () => {
      const opened = await exhaust(port, 20);
      // At the limit across several stats flushes (every 100 ms).
      await new Promise((r) => setTimeout(r, 600));
      assert.ok(h.alive(), `Herald died at the fd limit:\n${h.output().slice(-2000)}`);
      const held = opened.filter((o) => !o.closedByPeer);
      const refused = opened.length - held.length;
      assert.ok(refused > 0, `Herald took all ${opened.length} connections: the limit was never reached`);
      // The connections it did take are served, limit or not.
      const answers = await Promise.all(held.map((o) => ask(o.socket)));
      assert.deepEqual(
        answers.filter((a) => a !== 'HTTP/1.1 200 OK'),
        [],
        `${held.length} held connections`,
      );
      for (const o of opened) o.socket.destroy();
      await until('accepting again', async () => (await get(port).catch(() => undefined))?.status === 200);
      assert.ok(h.alive());
      const counted = (await childStat(admin, `listener.127.0.0.1_${port}.downstream_cx_accept_error`)) ?? 0;
      assert.ok(counted > 0, 'connections not accepted are counted');
      assert.match(h.output(), /connection\(s\) not accepted/);
      // Rate-limited: far fewer log lines than connections not accepted.
      const lines = h.output().match(/not accepted/g)?.length ?? 0;
      assert.ok(lines <= 12, `${lines} log lines for ${refused} connections`);
    });
  });
