// Envoy's front-proxy example (../shared/envoy-configs/front-proxy/envoy.yaml),
// unchanged except for what only exists inside its docker-compose setup: the
// service hostnames and fixed ports point at upstreams this test starts. It
// must route /service/1 and /service/2 as its author intended, over HTTP on
// one listener and HTTPS (its inline self-signed certificate) on the other.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Running, request, startHerald, startUpstream, type Upstream } from '../helpers/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const file = path.resolve(root, '../shared/envoy-configs/front-proxy/envoy.yaml');

describe('front-proxy example', { skip: !fs.existsSync(file) && 'corpus not present' }, () => {
  let s1: Upstream;
  let s2: Upstream;
  let h: Running;
  before(async () => {
    s1 = await startUpstream('service 1');
    s2 = await startUpstream('service 2');
    const yaml = fs
      .readFileSync(file, 'utf8')
      .replace(
        /address: service-envoy-1\n(\s+)port_value: 8000/,
        `address: 127.0.0.1\n$1port_value: ${s1.port}`,
      )
      .replace(
        /address: service-envoy-2\n(\s+)port_value: 8000/,
        `address: 127.0.0.1\n$1port_value: ${s2.port}`,
      )
      .replace(/address: 0\.0\.0\.0\n(\s+)port_value: \d+/g, 'address: 127.0.0.1\n$1port_value: 0');
    assert.doesNotMatch(
      yaml,
      /service-envoy-|port_value: (8080|8443|8001)/,
      'every docker-only address was replaced',
    );
    h = await startHerald(yaml);
  });
  after(async () => {
    await h.stop();
    await s1.close();
    await s2.close();
  });

  it('routes /service/1 and /service/2 over plain HTTP', async () => {
    const port = h.server.listeners[0]!.boundPort;
    const a = await request(port, { path: '/service/1' });
    const b = await request(port, { path: '/service/2/x' });
    assert.equal(a.status, 200);
    assert.equal(a.body, 'service 1');
    assert.equal(b.body, 'service 2');
    assert.equal(s2.seen[s2.seen.length - 1]!.url, '/service/2/x');
    assert.equal((await request(port, { path: '/other' })).status, 404);
  });

  it('routes over HTTPS with the example certificate', async () => {
    const port = h.server.listeners[1]!.boundPort;
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/service/1', rejectUnauthorized: false }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    assert.equal(body, 'service 1');
    assert.equal(s1.seen[s1.seen.length - 1]!.headers['x-forwarded-proto'], 'https');
  });

  it('serves its admin address', async () => {
    assert.equal((await request(h.adminPort, { path: '/ready' })).body, 'LIVE\n');
  });
});
