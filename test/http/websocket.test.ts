// WebSocket (HTTP/1.1 Upgrade) through upgrade_configs: the 101 turns both
// connections into a byte tunnel, half-close travels both ways, and an
// upgrade that is not enabled gets 403 (upgrade_failed) as in Envoy.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, startHerald, stat, staticCluster } from '../helpers/harness.js';

function upgradeExchange(port: number, path: string, send: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(
        `GET ${path} HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n${send[0] ?? ''}`,
      );
      let i = 1;
      const tick = setInterval(() => {
        if (i < send.length) s.write(send[i++]!);
        else {
          clearInterval(tick);
          s.end();
        }
      }, 30);
    });
    let buf = '';
    s.on('data', (d) => (buf += d.toString('latin1')));
    s.on('close', () => resolve(buf));
    s.on('error', reject);
    setTimeout(() => reject(new Error(`timeout: ${JSON.stringify(buf)}`)), 5000).unref();
  });
}

describe('WebSocket upgrades', () => {
  let up: http.Server;
  let h: Running;
  before(async () => {
    up = http.createServer((_q, s) => s.end('plain'));
    up.on('upgrade', (req, sock, head) => {
      sock.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-path: ${req.url}\r\n\r\n`,
      );
      if (head.length) sock.write(Buffer.concat([Buffer.from('echo:'), head]));
      sock.on('data', (d: Buffer) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
      sock.on('end', () => sock.end('bye'));
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'upgrade_configs: [{ upgrade_type: websocket }]',
        routes: `- match: { prefix: /off }
  route: { cluster: ws, upgrade_configs: [{ upgrade_type: websocket, enabled: false }] }
- match: { prefix: / }
  route: { cluster: ws }`,
        clusters: staticCluster('ws', [port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  });

  it('a 101 opens a tunnel: early data, later frames and the closing bytes all cross', async () => {
    const out = await upgradeExchange(h.port(), '/chat', ['early', 'hello', 'world']);
    assert.match(out, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(out, /\r\nconnection: upgrade\r\n/i);
    assert.match(out, /\r\nupgrade: websocket\r\n/i);
    assert.match(out, /\r\nx-path: \/chat\r\n/);
    const body = out.slice(out.indexOf('\r\n\r\n') + 4);
    // The echo server prefixes each read it gets; how TCP groups the frames is not fixed.
    assert.ok(body.startsWith('echo:') && body.endsWith('bye'), body);
    assert.equal(body.slice(0, -3).replaceAll('echo:', ''), 'earlyhelloworld');
    assert.equal(await stat(h.adminPort, 'http.test.downstream_cx_upgrades_total'), 1);
  });

  it('a route that disables the upgrade answers 403', async () => {
    const out = await upgradeExchange(h.port(), '/off', []);
    assert.match(out, /^HTTP\/1\.1 403 Forbidden\r\n/);
  });

  it('plain requests still work on the same listener', async () => {
    const r = await fetch(`http://127.0.0.1:${h.port()}/plain`);
    assert.equal(await r.text(), 'plain');
  });
});

describe('WebSocket without upgrade_configs', () => {
  let h: Running;
  before(async () => {
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: / }\n  route: { cluster: c }',
        clusters: staticCluster('c', [9]),
      }),
    );
  });
  after(() => h.stop());

  it('gets 403, as Envoy answers an upgrade it has no config for', async () => {
    const out = await upgradeExchange(h.port(), '/chat', []);
    assert.match(out, /^HTTP\/1\.1 403 Forbidden\r\n/);
  });
});

describe('upgrade_configs with their own filter chain', () => {
  let up: http.Server;
  let h: Running;
  before(async () => {
    up = http.createServer((_q, s) => s.end('plain'));
    up.on('upgrade', (_req, sock) => {
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      sock.on('data', (d: Buffer) => sock.write(d));
      sock.on('end', () => sock.end());
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    const fault = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
    h = await startHerald(
      httpBootstrap({
        hcmExtra: `upgrade_configs:
- upgrade_type: websocket
  filters:
  - name: envoy.filters.http.fault
    typed_config: { "@type": ${fault}, abort: { http_status: 418, percentage: { numerator: 100 } } }
  - name: envoy.filters.http.router
    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`,
        routes: `- match: { prefix: / }
  route: { cluster: ws }`,
        clusters: staticCluster('ws', [port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    up.closeAllConnections();
    await new Promise((r) => up.close(r));
  });

  it('an upgrade runs its own filters; other requests the HCM http_filters', async () => {
    const out = await upgradeExchange(h.port(), '/chat', []);
    assert.match(out, /^HTTP\/1\.1 418 /, 'the websocket chain aborts');
    const plain = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: h.port(), path: '/' }, (res) => {
          let b = '';
          res.on('data', (d) => {
            b += d;
          });
          res.on('end', () => resolve(`${res.statusCode} ${b}`));
        })
        .on('error', reject);
    });
    assert.equal(plain, '200 plain');
  });
});
