// Helpers for the data-path integration tests: bootstraps built as plain
// objects (JSON is YAML, so startHerald takes them as text), upstreams that
// echo what they saw, raw-socket and HTTP/2 clients, and small utilities.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export type Obj = Record<string, unknown>;

export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
export const HTTP_PROTOCOL_OPTIONS_TYPE =
  'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
export const DOWNSTREAM_TLS_TYPE =
  'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

export function sockAddr(port: number, address = '127.0.0.1'): Obj {
  return { socket_address: { address, port_value: port } };
}

/** An http_connection_manager network filter. */
export function hcmFilter(o: { statPrefix?: string; routeConfig: Obj; extra?: Obj }): Obj {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM_TYPE,
      stat_prefix: o.statPrefix ?? 'test',
      ...(o.extra ?? {}),
      route_config: o.routeConfig,
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
    },
  };
}

/** A route config with one virtual host for every domain. */
export function simpleRouteConfig(routes: Obj[], vhostExtra: Obj = {}, rcExtra: Obj = {}): Obj {
  return {
    name: 'local_route',
    ...rcExtra,
    virtual_hosts: [{ name: 'all', domains: ['*'], routes, ...vhostExtra }],
  };
}

/** An HCM filter chain answering every request with a direct response `body`. */
export function directChain(body: string, chainExtra: Obj = {}, statPrefix = 'test'): Obj {
  return {
    ...chainExtra,
    filters: [
      hcmFilter({
        statPrefix,
        routeConfig: simpleRouteConfig([
          { match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: body } } },
        ]),
      }),
    ],
  };
}

export function listener(name: string, filterChains: Obj[], extra: Obj = {}, address = '127.0.0.1'): Obj {
  return { name, address: sockAddr(0, address), filter_chains: filterChains, ...extra };
}

/** A STATIC cluster of 127.0.0.1 endpoints. */
export function cluster(name: string, ports: number[], extra: Obj = {}): Obj {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: ports.map((p) => ({ endpoint: { address: sockAddr(p) } })) }],
    },
    ...extra,
  };
}

/** Marks a cluster as speaking HTTP/2 (prior knowledge) to its upstreams. */
export const H2_UPSTREAM: Obj = {
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': HTTP_PROTOCOL_OPTIONS_TYPE,
      explicit_http_config: { http2_protocol_options: {} },
    },
  },
};

export function bootstrap(o: { listeners: Obj[]; clusters?: Obj[] }): string {
  return JSON.stringify({
    admin: { address: sockAddr(0) },
    static_resources: { listeners: o.listeners, clusters: o.clusters ?? [] },
  });
}

/** One HTTP listener named 'main' with the given routes and clusters. */
export function httpConfig(o: {
  routes: Obj[];
  clusters?: Obj[];
  hcmExtra?: Obj;
  vhostExtra?: Obj;
  rcExtra?: Obj;
  routeConfig?: Obj;
}): string {
  const routeConfig = o.routeConfig ?? simpleRouteConfig(o.routes, o.vhostExtra, o.rcExtra);
  return bootstrap({
    listeners: [listener('main', [{ filters: [hcmFilter({ routeConfig, extra: o.hcmExtra ?? {} })] }])],
    clusters: o.clusters ?? [],
  });
}

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface EchoUpstream {
  port: number;
  server: http.Server;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 upstream that records each request (with its body) and answers
 * 200 with a JSON echo of it, or runs `handler` after the body is read.
 */
export async function startEcho(
  name: string,
  handler?: (s: Seen, res: http.ServerResponse, req: http.IncomingMessage) => void,
): Promise<EchoUpstream> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      if (handler) return handler(s, res, req);
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(JSON.stringify({ name, method: s.method, url: s.url, headers: s.headers }));
    });
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

/**
 * A port nothing listens on, so connecting to it is refused. It is taken below the kernel's
 * ephemeral range (where every `listen(0)` and outgoing connection of the suite gets its port),
 * so a server another test starts meanwhile cannot land on it; checked free by binding it once.
 */
export async function closedPort(): Promise<number> {
  const [low] = ephemeralRange();
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * Math.max(1, low - 10000));
    const s = net.createServer();
    const free = await new Promise<boolean>((r) => {
      s.once('error', () => r(false));
      s.listen(port, '127.0.0.1', () => r(true));
    });
    if (free) {
      await new Promise((r) => s.close(r));
      return port;
    }
  }
}

function ephemeralRange(): [number, number] {
  try {
    const [a, b] = fs
      .readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (a && b && a > 10001) return [a, b];
  } catch {}
  return [32768, 60999];
}

export interface RawResult {
  data: Buffer;
  /** True when the peer closed (or reset) the connection before the deadline. */
  closed: boolean;
}

/**
 * Writes `data` on a fresh TCP connection and collects everything read until the
 * peer closes or `timeoutMs` passes (the socket is then destroyed).
 */
export function rawExchange(
  port: number,
  data: string | Buffer,
  timeoutMs = 2000,
  host = '127.0.0.1',
  until?: (got: Buffer) => boolean,
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host });
    let finished = false;
    const done = (closed: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(t);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('connect', () => s.write(data));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      if (until?.(Buffer.concat(chunks))) done(false);
    });
    s.on('close', () => done(true));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') {
        clearTimeout(t);
        finished = true;
        reject(e);
      }
      // ECONNRESET and friends: 'close' follows and reports it.
    });
  });
}

/**
 * Writes `steps` on a fresh TCP connection, each `atMs` after connecting (`end` half-closes after
 * its data), and resolves with everything read once the peer ends its side.
 */
export function rawTimeline(
  port: number,
  steps: Array<{ atMs: number; data: string; end?: boolean }>,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    s.on('connect', () => {
      for (const step of steps) {
        const send = () => (step.end ? s.end(step.data) : s.write(step.data));
        if (step.atMs > 0) setTimeout(send, step.atMs);
        else send();
      }
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      resolve(Buffer.concat(chunks).toString());
      s.destroy();
    });
    s.on('error', reject);
  });
}

export interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: string;
}

/** One request on an HTTP/2 session (prior knowledge). */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string | Buffer,
  timeoutMs = 5000,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ':path': '/', ...headers }, { endStream: !body });
    const t = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error('h2 request timed out'));
    }, timeoutMs);
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      resHeaders = h;
    });
    req.on('trailers', (h) => {
      trailers = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      clearTimeout(t);
      resolve({ status, headers: resHeaders, trailers, body: Buffer.concat(chunks).toString() });
    });
    req.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    if (body) req.end(body);
  });
}

export function h2Connect(port: number, host = '127.0.0.1'): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

export function closeH2(s: http2.ClientHttp2Session): Promise<void> {
  return new Promise((r) => {
    if (s.closed || s.destroyed) return r();
    s.close(() => r());
  });
}

/** A TCP server that writes back what it reads; with `replyOnEnd`, it answers 'bye:<n>' after the client's FIN. */
export async function startTcpEcho(replyOnEnd = false): Promise<{
  port: number;
  close(): Promise<void>;
  connections: number;
}> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let n = 0;
    s.on('data', (c: Buffer) => {
      n += c.length;
      if (!replyOnEnd) s.write(c);
    });
    s.on('end', () => {
      if (replyOnEnd) setTimeout(() => s.end(`bye:${n}`), 50);
      else s.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A downstream TLS transport socket presenting `cert`, with `alpn` advertised if given. */
export function downstreamTlsSocket(cert: { cert: string; key: string }, alpn: string[] = []): Obj {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS_TYPE,
      common_tls_context: {
        tls_certificates: [
          { certificate_chain: { inline_string: cert.cert }, private_key: { inline_string: cert.key } },
        ],
        ...(alpn.length ? { alpn_protocols: alpn } : {}),
      },
    },
  };
}

/** A self-signed certificate for 'localhost' made with openssl, or undefined when openssl is missing. */
export function selfSignedCert(
  o: { days?: number; san?: string } = {},
): { cert: string; key: string } | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-cert-'));
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyPath,
        '-out',
        certPath,
        '-days',
        String(o.days ?? 1),
        '-subj',
        '/CN=localhost',
        ...(o.san ? ['-addext', `subjectAltName=${o.san}`] : []),
      ],
      { stdio: 'ignore', timeout: 20000 },
    );
    return { cert: fs.readFileSync(certPath, 'utf8'), key: fs.readFileSync(keyPath, 'utf8') };
  } catch {
    return undefined;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether this machine can bind ::1. */
export async function hasIpv6Loopback(): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

/** Reads one stat by exact name (no regex filter, so names with '[' or '(' work). */
export async function statByName(adminPort: number, name: string): Promise<number | undefined> {
  const body = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: adminPort, path: '/stats?format=json', agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
  const stats = (JSON.parse(body) as { stats: { name: string; value: number }[] }).stats;
  return stats.find((s) => s.name === name)?.value;
}
