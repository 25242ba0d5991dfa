// The upstream HTTP/2 pool: one session per host until max_concurrent_streams
// streams are open on it, then another.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, startHerald, stat } from '../helpers/harness.js';

describe('upstream HTTP/2 pool', () => {
  let up: http2.Http2Server;
  let h: Running;
  const sessions = new Set<http2.Http2Session>();
  let release: () => void = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  before(async () => {
    up = http2.createServer();
    up.on('session', (s) => sessions.add(s));
    // Every stream waits until the test releases them, so streams pile up.
    up.on(
      'stream',
      (stream) => void held.then(() => stream.respond({ ':status': 200 }, { endStream: true })),
    );
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const port = (up.address() as net.AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: `- name: up
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 2 } }
  load_assignment:
    cluster_name: up
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } }] }]`,
      }),
    );
  });
  after(async () => {
    release();
    await h.stop();
    for (const s of sessions) s.destroy();
    await new Promise((r) => up.close(r));
  });

  it('5 concurrent requests with max_concurrent_streams 2 use 3 upstream connections', async () => {
    const results = Array.from({ length: 5 }, () =>
      fetch(`http://127.0.0.1:${h.port()}/`).then((r) => r.status),
    );
    const deadline = Date.now() + 3000;
    while (sessions.size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(sessions.size, 3);
    release();
    assert.deepEqual(await Promise.all(results), [200, 200, 200, 200, 200]);
    assert.equal(await stat(h.adminPort, 'cluster.up.upstream_cx_http2_total'), 3);
  });
});
