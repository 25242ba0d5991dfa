// The admin API under file-descriptor exhaustion, for real: Herald runs with
// `ulimit -n 64`, idle downstream connections take every descriptor, and /memory is
// asked over an admin connection opened before. process.memoryUsage() then throws
// EMFILE (it opens /proc/self/stat); /memory answered 500 with it.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const herald = path.join(root, 'bin/herald');
const LIMIT = 64;

function config(flushOnAdmin: boolean): string {
  return `
${flushOnAdmin ? 'stats_flush_on_admin: true' : 'stats_flush_interval: 1s'}
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          route_config: { virtual_hosts: [{ name: a, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
`;
}

interface Started {
  child: ChildProcess;
  adminPort: number;
  listenerPort: number;
  exited: Promise<number | null>;
}

/** Herald with at most LIMIT descriptors, one process; resolves once both ports are known. */
async function startLimited(yaml: string): Promise<Started> {
  const child = spawn(
    'sh',
    ['-c', `ulimit -n ${LIMIT} && exec "$0" "$@"`, herald, '--concurrency', '1', '--config-yaml', yaml],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let log = '';
  return await new Promise<Started>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start:\n${log}`)), 20_000);
    const onData = (d: Buffer) => {
      log += d.toString();
      const admin = /admin address: [\d.]+:(\d+)/.exec(log);
      const listener = /listener 'http' bound to [\d.]+:(\d+)/.exec(log);
      if (admin && listener && /is live/.test(log)) {
        clearTimeout(timer);
        resolve({ child, adminPort: Number(admin[1]), listenerPort: Number(listener[1]), exited });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => reject(new Error(`herald exited with ${code}:\n${log}`)));
  });
}

function get(port: number, p: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Opens idle connections until Herald holds LIMIT descriptors (listener first, then admin). */
async function exhaust(h: Started): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 2 * LIMIT; i++) {
    const s = net.connect(h.listenerPort, '127.0.0.1');
    s.on('error', () => {});
    sockets.push(s);
  }
  await new Promise((r) => setTimeout(r, 500));
  // The listeners keep a reserve of descriptors (accept guard); the admin server does not:
  // idle admin connections take the rest.
  for (let i = 0; i < LIMIT && fs.readdirSync(`/proc/${h.child.pid}/fd`).length < LIMIT; i++) {
    const s = net.connect(h.adminPort, '127.0.0.1');
    s.on('error', () => {});
    sockets.push(s);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200));
  const fds = fs.readdirSync(`/proc/${h.child.pid}/fd`).length;
  assert.ok(fds >= LIMIT, `Herald holds ${fds} descriptors of ${LIMIT}`);
  return sockets;
}

describe('admin under file-descriptor exhaustion', {
  skip: process.platform !== 'linux' && 'uses /proc and ulimit',
}, () => {
  it('/memory answers with the heap figures and the last RSS known', async () => {
    // Stats flushed on admin reads only: this case is about /memory itself.
    const h = await startLimited(config(true));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await get(h.adminPort, '/ready', agent)).status, 200);
      const sockets = await exhaust(h);
      const r = await get(h.adminPort, '/memory', agent);
      assert.equal(r.status, 200, r.body);
      const m = JSON.parse(r.body) as Record<string, string>;
      for (const k of ['allocated', 'heap_size', 'total_physical_bytes'])
        assert.ok(Number(m[k]) > 0, `${k}: ${m[k]}`);
      for (const s of sockets) s.destroy();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await get(h.adminPort, '/memory', agent)).status, 200);
    } finally {
      agent.destroy();
      h.child.kill('SIGKILL');
      await h.exited;
    }
  });

  it('the server keeps running when its stats flush comes during the exhaustion', async () => {
    const h = await startLimited(config(false));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await get(h.adminPort, '/ready', agent)).status, 200);
      const sockets = await exhaust(h);
      // stats_flush_interval is 1s.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(h.child.exitCode, null, 'Herald is still running');
      assert.equal((await get(h.adminPort, '/ready', agent)).status, 200);
      for (const s of sockets) s.destroy();
    } finally {
      agent.destroy();
      h.child.kill('SIGKILL');
      await h.exited;
    }
  });
});
