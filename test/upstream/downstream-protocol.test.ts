// use_downstream_protocol_config: the upstream request uses the protocol the
// client used (HTTP/1.1 -> HTTP/1.1, h2c -> HTTP/2).
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { httpBootstrap, type Running, request, startHerald } from '../helpers/harness.js';

describe('use_downstream_protocol_config', () => {
  let upstream: net.Server;
  let h: Running;
  before(async () => {
    // One port answering both HTTP/1.1 and h2c (by the client's first bytes), saying which it got.
    const h1 = http.createServer((req, res) => res.end(`h1 ${req.httpVersion}`));
    const h2 = http2.createServer((req, res) => res.end(`h2 ${req.httpVersion}`));
    upstream = net.createServer((s) => {
      s.once('data', (first: Buffer) => {
        s.pause();
        s.unshift(first);
        if (first.toString('latin1').startsWith('PRI * HTTP/2.0')) {
          // http2 reads the handle; hand it a stream that replays the first bytes.
          const d = Duplex.from({ readable: s, writable: s });
          h2.emit('connection', d);
        } else h1.emit('connection', s);
        s.resume();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as net.AddressInfo).port;
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: `- name: up
  type: STATIC
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} }
  load_assignment:
    cluster_name: up
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } }] }]`,
      }),
    );
  });
  after(async () => {
    await h.stop();
    upstream.close();
  });

  it('HTTP/1.1 from the client goes upstream as HTTP/1.1', async () => {
    const r = await request(h.port(), { path: '/' });
    assert.equal(r.body, 'h1 1.1');
  });

  it('h2c from the client goes upstream as HTTP/2', async () => {
    const c = http2.connect(`http://127.0.0.1:${h.port()}`);
    const body = await new Promise<string>((resolve, reject) => {
      const s = c.request({ ':path': '/' });
      let b = '';
      s.on('data', (d) => (b += d));
      s.on('end', () => resolve(b));
      s.on('error', reject);
    });
    c.close();
    assert.equal(body, 'h2 2.0');
  });
});
