// envoy.filters.http.buffer: the request reaches the upstream only once its
// whole body is in (with a content-length), and a body over max_request_bytes
// is answered 413 without reaching the upstream.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type EchoUpstream, startEcho } from '../helpers/data-path.js';
import { httpBootstrap, type Running, startHerald, stat } from '../helpers/harness.js';

function post(port: number, chunks: string[], gapMs = 20): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/upload', method: 'POST', agent: false },
      (res) => {
        let b = '';
        res.on('data', (d) => {
          b += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      },
    );
    req.on('error', reject);
    let i = 0;
    const next = () => {
      if (i < chunks.length) {
        req.write(chunks[i++]);
        setTimeout(next, gapMs);
      } else req.end();
    };
    next();
  });
}

describe('buffer filter', () => {
  let up: EchoUpstream;
  let h: Running;
  before(async () => {
    up = await startEcho('up');
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: `- name: up
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: up, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up.port} } } } }] }] }`,
      }).replace(
        '          http_filters:\n',
        '          http_filters:\n          - name: envoy.filters.http.buffer\n            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 100 }\n',
      ),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('a streamed body arrives whole, with a content-length', async () => {
    const r = await post(h.port(), ['hello ', 'buffered ', 'world']);
    assert.equal(r.status, 200);
    const seen = up.seen[up.seen.length - 1]!;
    assert.equal(seen.body, 'hello buffered world');
    assert.equal(seen.headers['content-length'], '20');
    assert.equal(seen.headers['transfer-encoding'], undefined);
  });

  it('a body over max_request_bytes gets 413 and never reaches the upstream', async () => {
    const before = up.seen.length;
    const r = await post(h.port(), ['x'.repeat(60), 'y'.repeat(60)]);
    assert.equal(r.status, 413);
    assert.equal(r.body, 'Payload Too Large');
    assert.equal(up.seen.length, before);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_rq_too_large'), 1);
  });
});
