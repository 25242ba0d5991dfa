// Per-connection debug/trace logging, switched at run time through
// POST /logging as with Envoy: `[C<id>]` connection lines and
// `[C<id>][S<id>]` request lines appear in Herald's stderr only while the
// `connection` / `http` loggers are at debug or trace.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request, startUpstream, type Upstream } from '../helpers/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const herald = path.join(root, 'bin/herald');

describe('connection and stream logging', () => {
  let up: Upstream;
  let child: ReturnType<typeof spawn>;
  let log = '';
  let port = 0;
  let adminPort = 0;
  before(async () => {
    up = await startUpstream('backend');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-log-'));
    const cfg = path.join(dir, 'envoy.yaml');
    fs.writeFileSync(
      cfg,
      `admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up.port} } } } }] }]
`,
    );
    child = spawn(herald, ['-c', cfg, '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`herald did not start:\n${log}`)), 15000);
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        const l = /listener 'l' bound to 127\.0\.0\.1:(\d+)/.exec(log);
        const a = /admin address: 127\.0\.0\.1:(\d+)/.exec(log);
        if (l && a && /is live/.test(log) && !port) {
          clearTimeout(t);
          port = Number(l[1]);
          adminPort = Number(a[1]);
          resolve();
        }
      });
    });
  });
  after(async () => {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await up.close();
  });

  /** Log text written while `fn` ran, once the lines it should produce have had time to arrive. */
  async function logDuring(fn: () => Promise<void>, until: RegExp | undefined): Promise<string> {
    const start = log.length;
    await fn();
    const end = Date.now() + 5000;
    while (until && !until.test(log.slice(start)) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    // A request made after fn marks the end: its admin log cannot precede fn's lines.
    return log.slice(start);
  }

  it('POST /logging?connection=trace&http=debug shows [C..] and [C..][S..] lines; back to info shows none', async () => {
    const set = await request(adminPort, { path: '/logging?connection=trace&http=debug', method: 'POST' });
    assert.equal(set.status, 200);
    assert.match(set.body, /^ {2}connection: trace$/m);
    assert.match(set.body, /^ {2}http: debug$/m);
    const on = await logDuring(async () => {
      assert.equal((await request(port, { path: '/traced' })).status, 200);
    }, /\[C\d+\] closing socket/);
    assert.match(on, /\[debug\]\[connection\] \[C\d+\] new connection from 127\.0\.0\.1:\d+\n/);
    assert.match(on, /\[debug\]\[http\] \[C\d+\]\[S\d+\] request headers complete \(end_stream=true\):\n/);
    assert.match(on, /^':path', '\/traced'$/m);
    assert.match(
      on,
      /\[debug\]\[http\] \[C\d+\]\[S\d+\] encoding headers via codec \(end_stream=false\):\n':status', '200'\n/,
    );
    assert.match(on, /\[C\d+\] closing socket: 0/);

    const reset = await request(adminPort, { path: '/logging?level=info', method: 'POST' });
    assert.equal(reset.status, 200);
    const off = await logDuring(async () => {
      assert.equal((await request(port, { path: '/quiet' })).status, 200);
      // The stat moves once the connection is gone: by then every line it would log is written.
      for (let i = 0; i < 100; i++) {
        const r = await request(adminPort, { path: '/stats?filter=^http\\.s\\.downstream_cx_active$' });
        if (r.body === 'http.s.downstream_cx_active: 0\n') break;
        await new Promise((res) => setTimeout(res, 20));
      }
    }, undefined);
    assert.doesNotMatch(off, /\[C\d+\]/);
    assert.doesNotMatch(off, /quiet/);
  });
});
