// A TLS client that leaves right after (or during) the handshake: Herald's TLS
// socket ends without closing, so the connection used to stay in CLOSE-WAIT
// with downstream_cx_active counting it.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import {
  bootstrap,
  directChain,
  downstreamTlsSocket,
  listener,
  selfSignedCert,
  sleep,
  statByName,
} from '../helpers/data-path.js';
import { type Running, startHerald } from '../helpers/harness.js';
import { settleCloseWait } from '../helpers/sockets.js';

const cert = selfSignedCert({ san: 'DNS:localhost' });

describe('TLS clients that leave early', { skip: !cert && 'openssl is not available' }, () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      bootstrap({
        listeners: [
          listener(
            'tls',
            [directChain('hi', { transport_socket: downstreamTlsSocket(cert!, []) }, 'early')],
            {
              stat_prefix: 'early_tls',
            },
          ),
        ],
      }),
    );
  });
  after(() => h?.stop());

  async function released(): Promise<void> {
    assert.deepEqual(await settleCloseWait([h.port()], 3000), [], 'no socket in CLOSE-WAIT');
    const deadline = Date.now() + 3000;
    let v: number | undefined;
    while ((v = await statByName(h.adminPort, 'listener.early_tls.downstream_cx_active')) !== 0) {
      if (Date.now() > deadline) assert.fail(`listener downstream_cx_active ${v}`);
      await sleep(25);
    }
  }

  it('a client that closes right after its handshake is released', async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: h.port(), rejectUnauthorized: false }, () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      });
    }
    await released();
  });

  it('a client that closes in the middle of its handshake is released', async () => {
    for (let i = 0; i < 5; i++) {
      const s = net.connect({ host: '127.0.0.1', port: h.port() });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      // A ClientHello's first bytes only, then FIN.
      s.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00]));
      await new Promise((r) => s.once('close', r));
    }
    await released();
  });
});
