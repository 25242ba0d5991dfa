// A TLS listener (DownstreamTlsContext) over real sockets, with a
// certificate made at test time by openssl: HTTPS and HTTP/2 over ALPN,
// x-forwarded-proto, and secret redaction in /config_dump.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import {
  bootstrap,
  cluster,
  downstreamTlsSocket,
  type EchoUpstream,
  hcmFilter,
  listener,
  rawExchange,
  selfSignedCert,
  simpleRouteConfig,
  startEcho,
} from '../helpers/data-path.js';
import { type Running, request, startHerald } from '../helpers/harness.js';

function httpsGet(
  port: number,
  path: string,
): Promise<{ status: number; body: string; alpn: string | false; proto: string }> {
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions & tls.ConnectionOptions = {
      host: '127.0.0.1',
      port,
      path,
      rejectUnauthorized: false,
      agent: false,
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
    };
    const req = https.get(opts, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: b,
          alpn: (res.socket as tls.TLSSocket).alpnProtocol ?? false,
          proto: res.httpVersion,
        }),
      );
    });
    req.on('error', reject);
  });
}

describe('TLS listener', () => {
  const cert = selfSignedCert();
  let up: EchoUpstream | undefined;
  let h: Running | undefined;
  before(async () => {
    if (!cert) return;
    up = await startEcho('up');
    const tlsSocket = (alpn: string[]) => downstreamTlsSocket(cert, alpn);
    const chain = (statPrefix: string, alpn: string[]) => ({
      transport_socket: tlsSocket(alpn),
      filters: [
        hcmFilter({
          statPrefix,
          routeConfig: simpleRouteConfig([{ match: { prefix: '/' }, route: { cluster: 'up' } }]),
        }),
      ],
    });
    h = await startHerald(
      bootstrap({
        listeners: [
          listener('tls', [chain('tls', [])]),
          listener('tls_h2', [chain('tls_h2', ['h2', 'http/1.1'])]),
        ],
        clusters: [cluster('up', [up.port])],
      }),
    );
  });
  after(async () => {
    await h?.stop();
    await up?.close();
  });

  it('serves HTTPS and tells the upstream x-forwarded-proto: https', async (t) => {
    if (!h || !up) return t.skip('openssl is not available');
    const r = await httpsGet(h.port('tls'), '/secure?x=1');
    assert.equal(r.status, 200);
    const j = JSON.parse(r.body);
    assert.equal(j.url, '/secure?x=1');
    assert.equal(j.headers['x-forwarded-proto'], 'https');
    assert.equal(r.proto, '1.1');
  });

  it('a plaintext HTTP request to the TLS listener gets no HTTP response', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const r = await rawExchange(h.port('tls'), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 2000);
    assert.doesNotMatch(r.data.toString('latin1'), /^HTTP\/1\.1 \d{3}/);
  });

  it('alpn_protocols [h2, http/1.1]: an HTTPS/1.1 client still gets HTTP/1.1', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const r1 = await httpsGet(h.port('tls_h2'), '/over-h1');
    assert.equal(r1.status, 200);
    assert.equal(r1.alpn, 'http/1.1');
    assert.equal(JSON.parse(r1.body).url, '/over-h1');
  });

  it('alpn_protocols [h2, http/1.1]: an HTTP/2 client negotiates h2 and is served', async (t) => {
    if (!h) return t.skip('openssl is not available');
    const s = http2.connect(`https://127.0.0.1:${h.port('tls_h2')}`, {
      rejectUnauthorized: false,
      servername: 'localhost',
    });
    s.on('error', () => {});
    try {
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = s.request({ ':path': '/over-h2' });
        let status = 0;
        let body = '';
        const timer = setTimeout(() => reject(new Error('no HTTP/2 response within 2 s')), 2000);
        req.on('response', (hd) => {
          status = Number(hd[':status']);
        });
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => {
          clearTimeout(timer);
          resolve({ status, body });
        });
        req.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        req.end();
      });
      assert.equal(s.alpnProtocol, 'h2');
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).headers['x-forwarded-proto'], 'https');
    } finally {
      s.destroy();
    }
  });

  /** The first TLS certificate of listener 'tls' as /config_dump shows it. */
  async function dumpedCert(adminPort: number): Promise<{ raw: string; entry: Record<string, unknown> }> {
    const r = await request(adminPort, { path: '/config_dump' });
    assert.equal(r.status, 200);
    const dump = JSON.parse(r.body) as { configs: Array<Record<string, unknown>> };
    const boot = dump.configs.find(
      (c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump',
    );
    assert.ok(boot, 'a BootstrapConfigDump');
    const listeners = (boot.bootstrap as { static_resources: { listeners: unknown[] } }).static_resources
      .listeners;
    const l = listeners[0] as {
      name: string;
      filter_chains: Array<{
        transport_socket: {
          typed_config: { common_tls_context: { tls_certificates: Array<Record<string, unknown>> } };
        };
      }>;
    };
    assert.equal(l.name, 'tls');
    return {
      raw: r.body,
      entry: l.filter_chains[0]!.transport_socket.typed_config.common_tls_context.tls_certificates[0]!,
    };
  }

  it('/config_dump shows the bootstrap with the private key hidden and the certificate intact', async (t) => {
    if (!h || !cert) return t.skip('openssl is not available');
    const { raw, entry } = await dumpedCert(h.adminPort);
    assert.equal(raw.includes('PRIVATE KEY'), false, 'the key must not appear anywhere');
    assert.deepEqual(entry.certificate_chain, { inline_string: cert.cert });
  });

  it('/config_dump redacts private_key as { inline_string: "[redacted]" } (Envoy redacts the strings inside a sensitive message)', async (t) => {
    if (!h || !cert) return t.skip('openssl is not available');
    const { entry } = await dumpedCert(h.adminPort);
    assert.deepEqual(entry.private_key, { inline_string: '[redacted]' });
  });
});
