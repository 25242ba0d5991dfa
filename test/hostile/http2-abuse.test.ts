// HTTP/2 abuse, over raw frames: floods and stalls a hostile client can send.
// Whatever Herald does with the offending connection (serve it, GOAWAY it,
// close it), it keeps serving everyone else, and once the attacker leaves,
// nothing of it remains (no CLOSE-WAIT socket, downstream_cx_active back to 0,
// no stream left active).
//
// Bounded for CI; HOSTILE_SCALE=<n> multiplies every flood (npm run test:hostile).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import {
  bootstrap,
  closeH2,
  directChain,
  h2Connect,
  h2Request,
  listener,
  sleep,
  statByName,
} from '../helpers/data-path.js';
import {
  ErrorCode,
  Flag,
  FrameType,
  frame,
  hpack,
  hpackIndexed,
  RawH2,
  requestBlock,
  u32,
} from '../helpers/h2-frames.js';
import { type Running, startHerald } from '../helpers/harness.js';
import { settleCloseWait } from '../helpers/sockets.js';

const SCALE = Math.max(1, Number(process.env.HOSTILE_SCALE ?? 1));

describe('hostile HTTP/2 clients', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(bootstrap({ listeners: [listener('h2', [directChain('ok', {}, 'abuse')])] }));
  });
  after(() => h?.stop());

  /** Another client is still served while (or after) the attack. */
  async function stillServing(): Promise<void> {
    const s = await h2Connect(h.port());
    try {
      assert.equal((await h2Request(s, { ':path': '/' })).status, 200);
    } finally {
      await closeH2(s);
    }
  }

  async function nothingLeft(): Promise<void> {
    assert.deepEqual(await settleCloseWait([h.port()], 8000), [], 'no socket in CLOSE-WAIT');
    const deadline = Date.now() + 8000;
    for (;;) {
      const cx = await statByName(h.adminPort, 'http.abuse.downstream_cx_active');
      const rq = await statByName(h.adminPort, 'http.abuse.downstream_rq_active');
      if (cx === 0 && rq === 0) return;
      if (Date.now() > deadline) assert.fail(`downstream_cx_active ${cx}, downstream_rq_active ${rq}`);
      await sleep(50);
    }
  }

  /** Runs an attack on a raw connection, then the attacker leaves (FIN, then gone). */
  async function attack(send: (c: RawH2) => Promise<void> | void): Promise<RawH2> {
    const c = await RawH2.connect(h.port());
    await send(c);
    await Promise.race([c.waitClosed(1500), sleep(300)]);
    await stillServing();
    c.socket.end();
    await c.waitClosed(8000);
    c.close();
    await nothingLeft();
    return c;
  }

  it('rapid reset: HEADERS + RST_STREAM pairs', async () => {
    const frames: Buffer[] = [];
    for (let id = 1, n = 0; n < 2000 * SCALE; id += 2, n++) {
      frames.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, requestBlock('/')));
      frames.push(frame(FrameType.RST_STREAM, 0, id, u32(ErrorCode.CANCEL)));
    }
    await attack((c) => c.write(...frames));
  });

  it('PING flood', async () => {
    const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
    await attack((c) => c.write(...Array.from({ length: 5000 * SCALE }, () => ping)));
  });

  it('SETTINGS flood', async () => {
    const settings = frame(FrameType.SETTINGS, 0, 0);
    await attack((c) => c.write(...Array.from({ length: 5000 * SCALE }, () => settings)));
  });

  it('CONTINUATION flood: one header block that never ends', async () => {
    const cont = frame(FrameType.CONTINUATION, 0, 1, hpack([['x-pad', 'a'.repeat(1000)]]));
    await attack((c) => {
      c.write(frame(FrameType.HEADERS, 0, 1, requestBlock('/')));
      for (let i = 0; i < 20 * SCALE; i++) c.write(...Array.from({ length: 100 }, () => cont));
    });
  });

  it('HPACK bomb: one large entry referenced many times', async () => {
    // A 4000-byte header added to the dynamic table, then referenced by index (one byte each)
    // 8000 times in one header block: 32 MB of headers from 8 KB.
    const refs = Buffer.alloc(8000, 0x80 | 62);
    await attack(async (c) => {
      c.write(
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS | Flag.END_STREAM,
          1,
          Buffer.concat([requestBlock('/'), hpackIndexed('x-big', 'b'.repeat(4000)), refs]),
        ),
      );
      // Refused somehow (RST_STREAM, GOAWAY or a close), never answered as a request.
      await c
        .waitFor(
          (f) =>
            f.type === FrameType.RST_STREAM ||
            f.type === FrameType.GOAWAY ||
            (f.type === FrameType.HEADERS && f.stream === 1),
          3000,
          'an answer to the bomb',
        )
        .catch(() => undefined);
      assert.ok(!c.frames.some((f) => f.type === FrameType.HEADERS && f.stream === 1), 'not served');
    });
  });

  it('streams opened and never finished, then the client vanishes', async () => {
    await attack((c) => {
      for (let id = 1; id < 200 * SCALE; id += 2)
        c.write(frame(FrameType.HEADERS, Flag.END_HEADERS, id, requestBlock('/', 'POST')));
    });
  });

  it('a reader that never opens its window (zero-window stall) is released when it leaves', async () => {
    const c = await RawH2.connect(h.port());
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may be sent to this client.
    const zero = Buffer.alloc(6);
    zero.writeUInt16BE(4, 0);
    zero.writeUInt32BE(0, 2);
    c.write(frame(FrameType.SETTINGS, 0, 0, zero));
    for (let id = 1; id < 40; id += 2)
      c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, requestBlock('/')));
    await sleep(300);
    assert.ok(
      !c.frames.some((f) => f.type === FrameType.DATA && f.payload.length > 0),
      'no DATA past a zero window',
    );
    await stillServing();
    c.close();
    await nothingLeft();
  });

  it('a node http2 client destroyed mid-stream leaves nothing behind', async () => {
    for (let i = 0; i < 10 * SCALE; i++) {
      const s = http2.connect(`http://127.0.0.1:${h.port()}`);
      s.on('error', () => {});
      const q = s.request({ ':path': '/', ':method': 'POST' }, { endStream: false });
      q.on('error', () => {});
      q.write('partial');
      await sleep(5);
      s.destroy();
    }
    await nothingLeft();
  });
});
