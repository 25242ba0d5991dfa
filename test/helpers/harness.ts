// Test harness: Herald in-process on ephemeral ports, upstreams the tests
// start themselves, and small request helpers over real sockets.
import http from 'node:http';
import type net from 'node:net';
import { Level, setAllLevels } from '../../src/common/logger.js';
import { Server } from '../../src/server/server.js';
import { serverSockets, TcpState } from './sockets.js';

setAllLevels(process.env.HERALD_TEST_LOG ? Level.debug : Level.error);

export interface Running {
  server: Server;
  /** Bound port of a listener by name (or the first listener). */
  port(name?: string): number;
  adminPort: number;
  stop(): Promise<void>;
}

/** Starts Herald on a YAML bootstrap. Use port_value: 0 everywhere. */
export async function startHerald(yaml: string): Promise<Running> {
  const server = await Server.create({ configYaml: yaml });
  await server.start();
  return {
    server,
    port: (name?: string) => (name ? server.listenerPort(name) : server.listeners[0]!.boundPort),
    adminPort: server.admin?.boundPort ?? 0,
    stop: async () => {
      // The leak sentinel: every Herald a test starts is checked as it stops.
      let leak: Error | undefined;
      try {
        await checkNoLeaks(server);
      } catch (e) {
        leak = e as Error;
      }
      await server.stop();
      if (leak) throw leak;
    },
  };
}

/** How long a closing connection may take: Envoy's delayed close (1 s) and some slack. */
const LEAK_SETTLE_MS = 2500;

/**
 * The leak sentinel. Once the test's clients are done: no socket on a Herald listener port is in
 * CLOSE-WAIT (a client closed and Herald kept the socket), and downstream_cx_active (listener and
 * HCM) counts no more connections than the kernel still has established, so a client that left
 * is no longer counted. A connection a test still holds open is not a leak.
 * HERALD_LEAK_SENTINEL=0 turns it off (e.g. to debug another failure).
 */
export async function checkNoLeaks(server: Server): Promise<void> {
  if (process.env.HERALD_LEAK_SENTINEL === '0') return;
  const ports = server.listeners.map((l) => l.boundPort).filter((p) => p > 0);
  if (ports.length === 0) return;
  const deadline = Date.now() + LEAK_SETTLE_MS;
  let problem = '';
  for (;;) {
    const sockets = ports.flatMap((p) => serverSockets(p));
    const closeWait = sockets.filter((s) => s.state === TcpState.CLOSE_WAIT);
    const established = sockets.filter((s) => s.state === TcpState.ESTABLISHED).length;
    let listenerActive = 0;
    const hcm: string[] = [];
    for (const g of server.context.stats.allGauges()) {
      if (!g.name.endsWith('.downstream_cx_active') || g.name.includes('.worker_')) continue;
      if (g.name.startsWith('listener.')) listenerActive += g.value;
      else if (g.name.startsWith('http.') && g.value > established) hcm.push(`${g.name}=${g.value}`);
    }
    problem = '';
    if (closeWait.length)
      problem += `${closeWait.length} socket(s) in CLOSE-WAIT on ports ${[...new Set(closeWait.map((s) => s.localPort))].join(',')}; `;
    if (listenerActive > established)
      problem += `listener downstream_cx_active is ${listenerActive} with ${established} established; `;
    if (hcm.length) problem += `${hcm.join(', ')} with ${established} established; `;
    if (!problem) return;
    const states = sockets.map((x) => x.state).join(',');
    problem += `server-side socket states: [${states}]`;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`leak sentinel: ${problem}`);
}

export interface Upstream {
  port: number;
  server: http.Server;
  /** Requests seen, in order. */
  seen: http.IncomingMessage[];
  close(): Promise<void>;
}

/** An HTTP/1.1 upstream on 127.0.0.1 answering with `handler` (default: 200 + name). */
export async function startUpstream(
  name: string,
  handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<Upstream> {
  const seen: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    if (handler) return handler(req, res);
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    server,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request on a fresh connection (no keep-alive pooling between calls). */
export function request(
  port: number,
  opts: { path?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function adminGet(port: number, path: string): Promise<Reply> {
  return request(port, { path });
}

/** Reads one stat from /stats?format=json. */
export async function stat(adminPort: number, name: string): Promise<number | undefined> {
  const r = await adminGet(
    adminPort,
    `/stats?format=json&filter=${encodeURIComponent(`^${name.replace(/\./g, '\\.')}$`)}`,
  );
  const s = (JSON.parse(r.body) as { stats: { name: string; value: number }[] }).stats.find(
    (x) => x.name === name,
  );
  return s?.value;
}

/** An HCM listener + router + clusters bootstrap, for tests that only vary routes and clusters. */
export function httpBootstrap(o: {
  routes: string;
  clusters: string;
  hcmExtra?: string;
  listenerExtra?: string;
  domains?: string;
}): string {
  return `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
${o.listenerExtra ?? ''}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: test
${indent(o.hcmExtra ?? '', 10)}
          route_config:
            name: test_route
            virtual_hosts:
            - name: all
              domains: [${o.domains ?? '"*"'}]
              routes:
${indent(o.routes, 14)}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
${indent(o.clusters, 2)}
`;
}

/** A STATIC cluster on 127.0.0.1 ports. */
export function staticCluster(name: string, ports: number[], extra = ''): string {
  return `- name: ${name}
  type: STATIC
  connect_timeout: 1s
${indent(extra, 2)}
  load_assignment:
    cluster_name: ${name}
    endpoints:
    - lb_endpoints:
${ports.map((p) => `      - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${p} } } }`).join('\n')}`;
}

export function indent(s: string, n: number): string {
  const pad = ' '.repeat(n);
  return s
    .split('\n')
    .map((l) => (l.trim() ? pad + l : l))
    .join('\n');
}
