// Shared-buffer socket reads (src/network/direct-read.ts) over real loopback sockets.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { own, readDirect, releaseClosedSocket } from '../../src/network/direct-read.js';

describe('direct reads', () => {
  let server: net.Server;
  let accepted: Promise<net.Socket>;
  let resolveAccepted: (s: net.Socket) => void;
  before(async () => {
    server = net.createServer({ pauseOnConnect: true }, (s) => resolveAccepted(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  async function pair(): Promise<{ client: net.Socket; serverSide: net.Socket }> {
    accepted = new Promise((r) => {
      resolveAccepted = r;
    });
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const serverSide = await accepted;
    return { client, serverSide };
  }

  it('delivers bytes as views of one shared buffer; own() copies what must outlive the read', async () => {
    const { client, serverSide } = await pair();
    const views: Buffer[] = [];
    const copies: Buffer[] = [];
    assert.equal(
      readDirect(serverSide, (c) => {
        views.push(c);
        copies.push(own(c));
      }),
      true,
    );
    serverSide.resume();
    client.write('first');
    await new Promise((r) => setTimeout(r, 50));
    client.write('second');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      copies.map((c) => c.toString()),
      ['first', 'second'],
    );
    // The views share memory: the first now shows the second read's bytes.
    assert.equal(views[0]!.buffer, views[1]!.buffer);
    assert.equal(views[0]!.toString(), 'secon');
    client.destroy();
    serverSide.destroy();
  });

  it('bytes put back with unshift come first, then the new reads, even when the socket resumes at once', async () => {
    const { client, serverSide } = await pair();
    const got: string[] = [];
    serverSide.resume();
    // Read the first bytes the ordinary way (as listener filters do), then put them back.
    await new Promise<void>((resolve) => {
      const onData = (c: Buffer) => {
        serverSide.off('data', onData);
        serverSide.pause();
        serverSide.unshift(c);
        assert.equal(
          readDirect(serverSide, (v) => got.push(v.toString())),
          true,
        );
        serverSide.resume();
        resolve();
      };
      serverSide.on('data', onData);
      client.write('first');
    });
    await new Promise((r) => setTimeout(r, 50));
    client.write('second');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got, ['first', 'second']);
    client.destroy();
    serverSide.destroy();
  });

  it('releaseClosedSocket drops the listeners and the read callback of a closed socket', async () => {
    const { client, serverSide } = await pair();
    let reads = 0;
    readDirect(serverSide, () => reads++);
    serverSide.on('end', () => {});
    const closed = new Promise<void>((r) =>
      serverSide.once('close', () => {
        releaseClosedSocket(serverSide);
        r();
      }),
    );
    // A listener added after the releasing one still runs for this close.
    let laterRan = false;
    serverSide.once('close', () => {
      laterRan = true;
    });
    serverSide.resume();
    client.end('bye');
    await new Promise((r) => setTimeout(r, 50));
    serverSide.destroy();
    await closed;
    assert.equal(laterRan, true);
    assert.equal(reads, 1);
    assert.equal(serverSide.listenerCount('end'), 0);
    assert.equal(serverSide.listenerCount('close'), 0);
    // An 'error' has a listener still, so a late one cannot crash the process.
    assert.equal(serverSide.listenerCount('error'), 1);
    serverSide.emit('error', new Error('late'));
    const cb = (serverSide as unknown as Record<symbol, unknown>)[
      Object.getOwnPropertySymbols(serverSide).find((s) => s.description === 'kBufferCb')!
    ];
    assert.equal(typeof cb, 'function');
    assert.equal((cb as () => unknown).length, 0, 'the read callback was not replaced');
  });
});
