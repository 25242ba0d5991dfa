// auto_config: the upstream protocol follows ALPN on the TLS connection (h2 if
// the server offers it, else HTTP/1.1).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { selfSignedCert } from '../helpers/data-path.js';
import { httpBootstrap, type Running, request, startHerald } from '../helpers/harness.js';

const cert = selfSignedCert();

function tlsCluster(name: string, port: number): string {
  return `- name: ${name}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      common_tls_context: { validation_context: { trust_chain_verification: ACCEPT_UNTRUSTED } }
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      auto_config: {}
  load_assignment:
    cluster_name: ${name}
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } }] }]`;
}

describe('auto_config (ALPN)', { skip: !cert && 'openssl is not available' }, () => {
  let h2: http2.Http2SecureServer;
  let h1: https.Server;
  let h: Running;
  before(async () => {
    h2 = http2.createSecureServer({ ...cert!, allowHTTP1: true }, (req, res) =>
      res.end(`h2 server saw ${req.httpVersion}`),
    );
    h1 = https.createServer({ ...cert! }, (req, res) => res.end(`h1 server saw ${req.httpVersion}`));
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: /two }
  route: { cluster: two }
- match: { prefix: /one }
  route: { cluster: one }`,
        clusters: `${tlsCluster('two', (h2.address() as net.AddressInfo).port)}
${tlsCluster('one', (h1.address() as net.AddressInfo).port)}`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    h1.closeAllConnections();
    await new Promise((r) => h1.close(r));
    await new Promise((r) => h2.close(r));
  });

  it('speaks HTTP/2 to a server that negotiates h2, reusing the first connection', async () => {
    const replies = await Promise.all(
      [1, 2, 3].map(() => request(h.port(), { path: '/two', method: 'POST', body: 'x' })),
    );
    for (const r of replies) assert.equal(r.body, 'h2 server saw 2.0');
    const again = await request(h.port(), { path: '/two' });
    assert.equal(again.body, 'h2 server saw 2.0');
  });

  it('speaks HTTP/1.1 to a server that does not offer h2', async () => {
    const r = await request(h.port(), { path: '/one' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'h1 server saw 1.1');
    assert.equal((await request(h.port(), { path: '/one' })).body, 'h1 server saw 1.1');
  });
});
