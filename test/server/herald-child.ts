// Herald as a child process (bin/herald), for tests that need what only a real
// process has: worker processes forked from the CLI, a start-up the test can
// race, a file-descriptor limit of its own.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const herald = path.join(root, 'bin/herald');

/** util-linux prlimit, to start Herald under a low file-descriptor limit. */
export const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

/** Ports free right now on 127.0.0.1 (bound together, so all distinct, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve) => {
          const s = net.createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface HeraldChild {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  alive(): boolean;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
}

export function spawnHerald(yaml: string, args: string[], o: { nofile?: number } = {}): HeraldChild {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-child-'));
  const config = path.join(dir, 'herald.yaml');
  fs.writeFileSync(config, yaml);
  const argv = [herald, '-c', config, '--drain-time-s', '1', ...args];
  const child =
    o.nofile !== undefined
      ? spawn('prlimit', [`--nofile=${o.nofile}:${o.nofile}`, process.execPath, ...argv])
      : spawn(process.execPath, argv);
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => out,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One request on a fresh connection; rejects on any socket error. */
export function get(port: number, p = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** A stat from a child's admin server (undefined while it is not there). */
export async function childStat(adminPort: number, name: string): Promise<number | undefined> {
  const r = await get(
    adminPort,
    `/stats?format=json&filter=${encodeURIComponent(`^${name.replace(/\./g, '\\.')}$`)}`,
  );
  return (JSON.parse(r.body) as { stats: { name: string; value: number }[] }).stats.find(
    (x) => x.name === name,
  )?.value;
}

export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 15000,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A listener with an HCM answering every request locally (no upstream needed). */
export function directListener(name: string, port: number, extra = ''): string {
  return `  - name: ${name}
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
${extra}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                direct_response: { status: 200, body: { inline_string: ok } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`;
}
