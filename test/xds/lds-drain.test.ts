// A listener changed by LDS (same address) drains its old connections the way
// Envoy does: an HTTP/1 keep-alive connection finishes the request in flight
// and its next response carries `connection: close`; an idle one is not closed
// under a client that may be sending on it, only once --drain-time-s has
// passed. Keep-alive clients hammering through several listener rewrites lose
// nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';

/** Writes next to the target, then renames over it (what path_config_source follows). */
function moveIntoPlace(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function ldsFile(version: number): string {
  return `version_info: "${version}"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: web
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: web
        route_config:
          name: local
          virtual_hosts:
          - name: all
            domains: ["*"]
            response_headers_to_add: [{ header: { key: x-config, value: "v${version}" } }]
            routes:
            - match: { prefix: "/direct" }
              direct_response: { status: 200, body: { inline_string: "direct" } }
            - match: { prefix: "/" }
              route: { cluster: up }
        http_filters:
        - name: envoy.filters.http.router
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`;
}

function bootstrap(dir: string, upstreamPort: number): string {
  return `
node: { id: lds-drain, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
  lds_config: { path_config_source: { path: ${path.join(dir, 'lds.yaml')} }, resource_api_version: V3 }
static_resources:
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } } }] }]
`;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function get(agent: http.Agent, port: number, p: string): Promise<{ status: number; config: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, config: String(res.headers['x-config']) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/**
 * 8 keep-alive clients send requests back to back for `ms` while the listener file is rewritten
 * every `everyMs`. Returns the failures and the config versions seen.
 */
async function hammer(
  port: number,
  ms: number,
  everyMs: number,
  rewrite: (n: number) => void,
  paths = (i: number, n: number) => (n % 2 ? '/direct' : `/c${i}`),
): Promise<{ ok: number; failures: string[]; seen: Set<string>; rewrites: number }> {
  const deadline = Date.now() + ms;
  const failures: string[] = [];
  const seen = new Set<string>();
  let ok = 0;
  let rewrites = 0;
  const timer = setInterval(() => rewrite(++rewrites), everyMs);
  const client = async (i: number) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let n = 0;
    while (Date.now() < deadline) {
      // By default proxied and local responses alternate: both must survive the drain.
      const p = paths(i, n++);
      try {
        const r = await get(agent, port, p);
        if (r.status === 200) {
          ok++;
          seen.add(r.config);
        } else failures.push(`status ${r.status}`);
      } catch (e) {
        failures.push((e as NodeJS.ErrnoException).code ?? (e as Error).message);
      }
    }
    agent.destroy();
  };
  await Promise.all(Array.from({ length: 8 }, (_, i) => client(i)));
  clearInterval(timer);
  return { ok, failures, seen, rewrites };
}

for (const concurrency of [1, 2])
  describe(`LDS update under keep-alive load (${concurrency === 1 ? 'one process' : 'two workers'})`, () => {
    let up: Upstream;
    let dir: string;
    let h: Server;
    let port: number;
    let version = 1;
    before(async () => {
      up = await startUpstream('up', (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        if (!req.url?.startsWith('/slow')) {
          res.end('up');
          return;
        }
        // The head leaves at once, the body 20 ms later: a drain can fall in between.
        res.flushHeaders();
        setTimeout(() => res.end('slow'), 20);
      });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-lds-drain-'));
      fs.writeFileSync(path.join(dir, 'lds.yaml'), ldsFile(version));
      h = await Server.create({ configYaml: bootstrap(dir, up.port), concurrency, drainTimeS: 2 });
      await h.start();
      await until('listener', () => h.listeners.some((l) => l.name === 'web'));
      port = h.listenerPort('web');
    });
    /** Waits until the main process and every worker counted `n` more of a listener_manager counter. */
    const applied = async (counter: string, before: number) => {
      const everyProcess = concurrency === 1 ? 1 : 1 + concurrency;
      await until(`${counter} in every process`, async () => {
        await h.workers?.flushStats();
        return h.context.stats.counter(`listener_manager.${counter}`).value >= before + everyProcess;
      });
    };
    const count = (counter: string) => h.context.stats.counter(`listener_manager.${counter}`).value;
    after(async () => {
      await h.stop();
      await up.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('loses no request while the listener is replaced several times, and switches config', async () => {
      const agent = new http.Agent({ keepAlive: true });
      await until(
        'serving',
        async () => (await get(agent, port, '/direct').catch(() => undefined))?.status === 200,
      );
      agent.destroy();
      // Several rounds: the race this guards against (a keep-alive connection closed as its
      // client sends on it) is narrow, so one round could miss it.
      let total = 0;
      for (let round = 0; round < 3; round++) {
        const r = await hammer(port, 1200, 150, () => {
          version++;
          moveIntoPlace(path.join(dir, 'lds.yaml'), ldsFile(version));
        });
        total += r.ok;
        assert.equal(
          r.failures.length,
          0,
          `round ${round}: ${r.failures.length} of ${r.ok + r.failures.length} failed (${[...new Set(r.failures)].join(', ')})`,
        );
        assert.ok(r.rewrites >= 5, `round ${round}: ${r.rewrites} rewrites`);
        assert.ok(r.seen.size >= 2, `round ${round}: responses came from ${[...r.seen].join(', ')}`);
      }
      assert.ok(total > 0);
      // The last rewrite is what new connections get.
      const last = new http.Agent({ keepAlive: false });
      await until(`v${version}`, async () => (await get(last, port, '/direct')).config === `v${version}`);
      assert.equal(h.listenerPort('web'), port, 'same socket throughout');
    });

    it('a response whose head left before the update still keeps its keep-alive promise', {
      skip: concurrency !== 1,
    }, async () => {
      const r = await hammer(
        port,
        1500,
        40,
        () => {
          version++;
          moveIntoPlace(path.join(dir, 'lds.yaml'), ldsFile(version));
        },
        (i) => `/slow${i}`,
      );
      assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.ok + r.failures.length} failed`);
    });

    it('an idle keep-alive connection stays open through the update and closes after the drain time', async () => {
      // Whatever an earlier test rewrote has been applied.
      const fresh = new http.Agent({ keepAlive: false });
      await until('settled', async () => (await get(fresh, port, '/direct')).config === `v${version}`);
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      let data = '';
      s.on('data', (c: Buffer) => {
        data += c.toString('latin1');
      });
      let closed = false;
      s.on('close', () => {
        closed = true;
      });
      s.on('error', () => {});
      s.write('GET /direct HTTP/1.1\r\nhost: a\r\n\r\n');
      await until('first response', () => data.includes('direct'));
      assert.doesNotMatch(data, /connection: close/i);
      const config = /x-config: (v\d+)/.exec(data)?.[1];
      version++;
      let before = count('listener_modified');
      moveIntoPlace(path.join(dir, 'lds.yaml'), ldsFile(version));
      await applied('listener_modified', before);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(closed, false, 'idle connection left open: its client may be sending on it');
      // Used again: answered by the old config, with connection: close.
      data = '';
      s.write('GET /direct HTTP/1.1\r\nhost: a\r\n\r\n');
      await until('closed after its response', () => closed);
      assert.match(data, /HTTP\/1\.1 200/);
      assert.match(data, /connection: close/i);
      // Answered by the config it started with, not the one that replaced it.
      assert.match(data, new RegExp(`x-config: ${config}\r\n`));
      assert.notEqual(config, `v${version}`);

      // Another idle one, never used again: closed once the drain time (2 s here) is over.
      const idle = net.connect(port, '127.0.0.1');
      let idleData = '';
      idle.on('data', (c: Buffer) => {
        idleData += c.toString('latin1');
      });
      let idleClosedAt = 0;
      idle.on('close', () => {
        idleClosedAt = Date.now();
      });
      idle.on('error', () => {});
      idle.write('GET /direct HTTP/1.1\r\nhost: a\r\n\r\n');
      await until('response', () => idleData.includes('direct'));
      version++;
      const updatedAt = Date.now();
      before = count('listener_modified');
      moveIntoPlace(path.join(dir, 'lds.yaml'), ldsFile(version));
      await applied('listener_modified', before);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(idleClosedAt, 0, 'still open within the drain time');
      await until('closed after the drain time', () => idleClosedAt > 0, 10000);
      assert.ok(idleClosedAt - updatedAt >= 1500, `closed ${idleClosedAt - updatedAt} ms after the update`);
    });

    it('a removed listener stops accepting; its idle connection is served once more, with connection: close', async () => {
      const s = net.connect(port, '127.0.0.1');
      let data = '';
      s.on('data', (c: Buffer) => {
        data += c.toString('latin1');
      });
      let closed = false;
      s.on('close', () => {
        closed = true;
      });
      s.on('error', () => {});
      s.write('GET /direct HTTP/1.1\r\nhost: a\r\n\r\n');
      await until('first response', () => data.includes('direct'));
      const before = count('listener_removed');
      moveIntoPlace(path.join(dir, 'lds.yaml'), `version_info: "${++version}"\nresources: []\n`);
      await applied('listener_removed', before);
      await until(
        'not accepting',
        async () =>
          await get(new http.Agent(), port, '/direct').then(
            () => false,
            () => true,
          ),
      );
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(closed, false, 'idle connection left open');
      data = '';
      s.write('GET /direct HTTP/1.1\r\nhost: a\r\n\r\n');
      await until('closed after its response', () => closed);
      assert.match(data, /HTTP\/1\.1 200/);
      assert.match(data, /connection: close/i);
    });
  });
