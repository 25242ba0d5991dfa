// Draining (POST /drain_listeners?graceful): HTTP/1 connections get
// `connection: close` on their next response; HTTP/2 gets Envoy's two-step
// GOAWAY (shutdown notice, then the final one after drain_timeout) while
// streams in flight finish.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  startHerald,
  startUpstream,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

describe('graceful drain', () => {
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('up', (req, res) => {
      req.resume();
      setTimeout(() => res.end('done'), req.url === '/slow' ? 400 : 0);
    });
    h = await startHerald(
      httpBootstrap({
        hcmExtra: 'drain_timeout: 0.3s',
        routes: `- match: { prefix: / }
  route: { cluster: up }`,
        clusters: staticCluster('up', [up.port]),
      }),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('HTTP/2: GOAWAY at once, the stream in flight finishes, the session closes after drain_timeout', async () => {
    const session = http2.connect(`http://127.0.0.1:${h.port()}`);
    const goaway = new Promise<number>((r) => session.once('goaway', () => r(Date.now())));
    const closed = new Promise<number>((r) => session.once('close', () => r(Date.now())));
    session.on('error', () => {});
    const body = new Promise<string>((resolve, reject) => {
      const s = session.request({ ':path': '/slow' });
      let b = '';
      s.setEncoding('utf8');
      s.on('data', (d) => {
        b += d;
      });
      s.on('end', () => resolve(b));
      s.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const res = await fetch(`http://127.0.0.1:${h.adminPort}/drain_listeners?graceful`, { method: 'POST' });
    assert.equal(res.status, 200);
    const g = await goaway;
    assert.ok(g - t0 < 200, 'the shutdown notice is sent at once');
    assert.equal(await body, 'done', 'the stream in flight finishes');
    const c = await closed;
    assert.ok(c - t0 >= 250, `the session stays until drain_timeout (${c - t0} ms)`);
  });

  it('HTTP/1: the next response carries connection: close', async () => {
    // The listener keeps accepting during a graceful drain; connections opened now are drained too.
    const s = net.connect(h.port(), '127.0.0.1');
    const data = await new Promise<string>((resolve) => {
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
      });
      s.on('close', () => resolve(got));
      s.write('GET /x HTTP/1.1\r\nhost: a\r\n\r\n');
    });
    assert.match(data, /^HTTP\/1\.1 200/);
    assert.match(data, /\r\nconnection: close\r\n/i);
  });
});
