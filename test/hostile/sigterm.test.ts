// SIGTERM while hostile clients hold connections: clients that sent malformed
// requests and never close, half-closed HTTP/2 clients, idle keep-alive and
// slowloris connections. Herald must close each of them itself (delayed close,
// drain) and exit well before --drain-time-s, not wait on a socket it leaked.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Flag, FrameType, frame, RawH2, requestBlock } from '../helpers/h2-frames.js';

const herald = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/herald');
const SCALE = Math.max(1, Number(process.env.HOSTILE_SCALE ?? 1));

const CONFIG = `
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
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200, body: { inline_string: ok } } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
`;

async function startChild(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-sigterm-'));
  const cfg = path.join(dir, 'c.yaml');
  fs.writeFileSync(cfg, CONFIG);
  const child = spawn(herald, ['-c', cfg, '--log-level', 'info', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`herald did not start:\n${log}`)), 15000);
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      const l = /listener 'l' bound to 127\.0\.0\.1:(\d+)/.exec(log);
      if (l && /is live/.test(log)) {
        clearTimeout(t);
        resolve(Number(l[1]));
      }
    });
  });
  return { child, port };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

for (const concurrency of ['1', '2']) {
  describe(`SIGTERM with hostile connections open (--concurrency ${concurrency})`, () => {
    it('exits once Herald has closed them itself, long before --drain-time-s', {
      timeout: 60_000,
    }, async () => {
      const { child, port } = await startChild(['--concurrency', concurrency, '--drain-time-s', '30']);
      const held: net.Socket[] = [];
      const h2: RawH2[] = [];
      try {
        // Malformed requests whose senders never close and never read.
        for (let i = 0; i < 20 * SCALE; i++) {
          const s = await connect(port);
          s.pause();
          s.write(
            i % 2
              ? 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'
              : 'BAD\r\n\r\n',
          );
          held.push(s);
        }
        // Idle keep-alive connections that answered one request.
        for (let i = 0; i < 5; i++) {
          const s = await connect(port);
          s.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
          held.push(s);
        }
        // Slowloris: a head that never ends.
        for (let i = 0; i < 5; i++) {
          const s = await connect(port);
          s.write('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ');
          held.push(s);
        }
        // HTTP/2 clients: one half-closed after a request, one idle. (A client with a stream open
        // holds the drain until --drain-time-s, rightly: that is not a leak.)
        for (let i = 0; i < 2; i++) {
          const c = await RawH2.connect(port);
          c.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, requestBlock('/')));
          if (i === 0) c.socket.end();
          h2.push(c);
        }
        await new Promise((r) => setTimeout(r, 300));
        const exited = new Promise<number>((r) => child.once('exit', () => r(Date.now())));
        const signalled = Date.now();
        child.kill('SIGTERM');
        const at = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(0), 20_000))]);
        assert.ok(
          at > 0,
          'Herald did not exit within 20 s of SIGTERM (drain time 30 s): a connection it leaked held it',
        );
        // An idle HTTP/2 connection gets its final GOAWAY after drain_timeout (5 s), as in Envoy.
        assert.ok(at - signalled < 12_000, `exited ${at - signalled} ms after SIGTERM`);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        for (const s of held) s.destroy();
        for (const c of h2) c.close();
      }
    });
  });
}
