// tcp_proxy over real sockets: bytes both ways, half-close, weighted
// clusters, failures and stats.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  bootstrap,
  closedPort,
  cluster,
  listener,
  type Obj,
  startTcpEcho,
  TCP_PROXY_TYPE,
} from '../helpers/data-path.js';
import { type Running, startHerald, stat } from '../helpers/harness.js';

function tcpProxyChain(statPrefix: string, target: Obj): Obj {
  return {
    filters: [
      {
        name: 'envoy.filters.network.tcp_proxy',
        typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: statPrefix, ...target },
      },
    ],
  };
}

/** Connects, writes `data`, half-closes, and collects everything until the peer ends. */
function exchange(
  port: number,
  data: Buffer | string,
  timeoutMs = 5000,
): Promise<{ got: Buffer; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ got: Buffer.concat(chunks), ended: false });
    }, timeoutMs);
    s.on('connect', () => {
      s.write(data);
      s.end();
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      clearTimeout(t);
      s.end();
      resolve({ got: Buffer.concat(chunks), ended: true });
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** A TCP server that writes its name on connect and closes. */
async function startNamed(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('tcp_proxy', () => {
  let echo: Awaited<ReturnType<typeof startTcpEcho>>;
  let replyOnEnd: Awaited<ReturnType<typeof startTcpEcho>>;
  let a: Awaited<ReturnType<typeof startNamed>>;
  let b: Awaited<ReturnType<typeof startNamed>>;
  let h: Running;
  before(async () => {
    echo = await startTcpEcho();
    replyOnEnd = await startTcpEcho(true);
    a = await startNamed('A');
    b = await startNamed('B');
    const refused = await closedPort();
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('echo', [tcpProxyChain('echo', { cluster: 'echo' })]),
          listener('halfclose', [tcpProxyChain('half', { cluster: 'reply_on_end' })]),
          listener('weighted', [
            tcpProxyChain('weighted', {
              weighted_clusters: {
                clusters: [
                  { name: 'a', weight: 1 },
                  { name: 'b', weight: 1 },
                ],
              },
            }),
          ]),
          listener('refused', [tcpProxyChain('refused', { cluster: 'refused' })]),
        ],
        clusters: [
          cluster('echo', [echo.port]),
          cluster('reply_on_end', [replyOnEnd.port]),
          cluster('a', [a.port]),
          cluster('b', [b.port]),
          cluster('refused', [refused]),
        ],
      }),
    );
  });
  after(async () => {
    await h.stop();
    await echo.close();
    await replyOnEnd.close();
    await a.close();
    await b.close();
  });

  it('echoes bytes both ways', async () => {
    const r = await exchange(h.port('echo'), 'hello, tcp');
    assert.equal(r.got.toString(), 'hello, tcp');
    assert.equal(r.ended, true);
  });

  it('carries 2 MB intact in both directions', async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const r = await exchange(h.port('echo'), data);
    assert.equal(r.got.length, data.length);
    assert.equal(
      createHash('sha256').update(r.got).digest('hex'),
      createHash('sha256').update(data).digest('hex'),
    );
  });

  it('a client that stops reading for a while still gets every byte, in order (backpressure)', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      const s = net.connect({ port: h.port('echo'), host: '127.0.0.1' });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`only ${n} of ${data.length} bytes came back`));
      }, 10000);
      s.pause();
      s.on('connect', () => {
        // Many small writes: many reads in Herald, each a view of its shared buffer.
        for (let off = 0; off < data.length; off += 16 * 1024) s.write(data.subarray(off, off + 16 * 1024));
        setTimeout(() => s.resume(), 300);
      });
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        n += c.length;
        if (n >= data.length) {
          clearTimeout(t);
          s.destroy();
          resolve(Buffer.concat(chunks));
        }
      });
      s.on('error', reject);
    });
    assert.equal(got.length, data.length);
    assert.ok(got.equals(data), 'the bytes differ');
  });

  it('carries a half-close: the client ends its side and still gets the reply written after it', async () => {
    const r = await exchange(h.port('halfclose'), 'abcdef');
    assert.equal(r.got.toString(), 'bye:6');
    assert.equal(r.ended, true);
  });

  it('counts downstream_cx_total and rx/tx bytes under tcp.<stat_prefix>.', async () => {
    const cx0 = (await stat(h.adminPort, 'tcp.echo.downstream_cx_total')) ?? 0;
    const rx0 = (await stat(h.adminPort, 'tcp.echo.downstream_cx_rx_bytes_total')) ?? 0;
    const tx0 = (await stat(h.adminPort, 'tcp.echo.downstream_cx_tx_bytes_total')) ?? 0;
    await exchange(h.port('echo'), '12345');
    await exchange(h.port('echo'), '1234567890');
    assert.equal(await stat(h.adminPort, 'tcp.echo.downstream_cx_total'), cx0 + 2);
    assert.equal(await stat(h.adminPort, 'tcp.echo.downstream_cx_rx_bytes_total'), rx0 + 15);
    assert.equal(await stat(h.adminPort, 'tcp.echo.downstream_cx_tx_bytes_total'), tx0 + 15);
    const lport = h.port('echo');
    assert.ok(((await stat(h.adminPort, `listener.127.0.0.1_${lport}.downstream_cx_total`)) ?? 0) >= 2);
  });

  it('weighted_clusters spreads connections over both clusters', async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const r = await exchange(h.port('weighted'), '');
      const name = r.got.toString();
      counts[name] = (counts[name] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(counts).sort(), ['A', 'B']);
    // Binomial(40, 0.5): both well away from 0.
    assert.ok(counts.A! >= 6 && counts.B! >= 6, JSON.stringify(counts));
  });

  it('an unreachable upstream closes the downstream connection and counts upstream_cx_connect_fail', async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port: h.port('refused'), host: '127.0.0.1' });
      const t = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 3000);
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    assert.equal(closed, true);
    assert.equal(await stat(h.adminPort, 'cluster.refused.upstream_cx_connect_fail'), 1);
  });
});
