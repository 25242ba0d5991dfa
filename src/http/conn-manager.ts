// The HTTP connection manager at run time: takes over accepted sockets,
// picks the codec (HTTP/1.1 or HTTP/2, by codec_type or by sniffing the
// HTTP/2 connection preface for AUTO) and runs one ActiveStream per request.
//
// The codecs are Node's http and http2 servers, fed sockets directly; they
// never listen themselves. One pair serves every connection of a filter chain.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { logger } from '../common/logger.js';
import type { Headers } from '../common/substitution-formatter.js';
import { type DownstreamConnection, type NetworkFilter, NetworkFilterStatus } from '../network/filter.js';
import type { Counter, Gauge, StatsScope } from '../stats/store.js';
import {
  ActiveStream,
  type DownstreamRequest,
  type DownstreamResponse,
  stripHopByHop,
} from './active-stream.js';
import type { ConnectionManagerConfig } from './conn-manager-config.js';
import type { DownstreamInfo } from './filter.js';

const log = logger('http');

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export class HttpConnectionManagerStats {
  readonly downstream_cx_total: Counter;
  readonly downstream_cx_active: Gauge;
  readonly downstream_cx_http1_total: Counter;
  readonly downstream_cx_http2_total: Counter;
  readonly downstream_cx_protocol_error: Counter;
  readonly downstream_rq_total: Counter;
  readonly downstream_rq_active: Gauge;
  readonly downstream_rq_http1_total: Counter;
  readonly downstream_rq_http2_total: Counter;
  readonly downstream_rq_completed: Counter;
  readonly downstream_rq_1xx: Counter;
  readonly downstream_rq_2xx: Counter;
  readonly downstream_rq_3xx: Counter;
  readonly downstream_rq_4xx: Counter;
  readonly downstream_rq_5xx: Counter;
  readonly no_route: Counter;
  readonly no_cluster: Counter;
  readonly rq_direct_response: Counter;
  readonly rq_redirect: Counter;

  constructor(readonly scope: StatsScope) {
    const c = (n: string) => scope.counter(n);
    this.downstream_cx_total = c('downstream_cx_total');
    this.downstream_cx_active = scope.gauge('downstream_cx_active');
    this.downstream_cx_http1_total = c('downstream_cx_http1_total');
    this.downstream_cx_http2_total = c('downstream_cx_http2_total');
    this.downstream_cx_protocol_error = c('downstream_cx_protocol_error');
    this.downstream_rq_total = c('downstream_rq_total');
    this.downstream_rq_active = scope.gauge('downstream_rq_active');
    this.downstream_rq_http1_total = c('downstream_rq_http1_total');
    this.downstream_rq_http2_total = c('downstream_rq_http2_total');
    this.downstream_rq_completed = c('downstream_rq_completed');
    this.downstream_rq_1xx = c('downstream_rq_1xx');
    this.downstream_rq_2xx = c('downstream_rq_2xx');
    this.downstream_rq_3xx = c('downstream_rq_3xx');
    this.downstream_rq_4xx = c('downstream_rq_4xx');
    this.downstream_rq_5xx = c('downstream_rq_5xx');
    this.no_route = c('no_route');
    this.no_cluster = c('no_cluster');
    this.rq_direct_response = c('rq_direct_response');
    this.rq_redirect = c('rq_redirect');
  }

  responseClass(code: number): void {
    if (code >= 500) this.downstream_rq_5xx.inc();
    else if (code >= 400) this.downstream_rq_4xx.inc();
    else if (code >= 300) this.downstream_rq_3xx.inc();
    else if (code >= 200) this.downstream_rq_2xx.inc();
    else this.downstream_rq_1xx.inc();
  }
}

const connOf = new WeakMap<Socket | Duplex, DownstreamConnection>();
const sessionConn = new WeakMap<http2.Http2Session, DownstreamConnection>();

/**
 * A stream over `socket` that first yields `head` (bytes already read while
 * sniffing), then the socket's own data. Writes go straight to the socket.
 * TODO(perf): peek with MSG_PEEK instead, so h2c keeps the native handle.
 */
function replaying(socket: Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.once('end', () => d.push(null));
  socket.once('close', () => d.destroy());
  socket.on('error', (e) => d.destroy(e));
  const conn = connOf.get(socket);
  if (conn) connOf.set(d, conn);
  // Address accessors some consumers read from the session's socket.
  for (const k of ['remoteAddress', 'remotePort', 'localAddress', 'localPort', 'remoteFamily'] as const)
    Object.defineProperty(d, k, { get: () => socket[k] });
  (d as Duplex & { setTimeout(ms: number, cb?: () => void): Duplex }).setTimeout = (ms, cb) => {
    socket.setTimeout(ms, cb);
    return d;
  };
  return d;
}

/** Envoy's "internal" addresses for x-envoy-internal: RFC 1918, loopback, link-local, unique-local. */
function isInternalAddress(a: string): boolean {
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  if (net.isIPv4(v4)) {
    return /^(10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(v4);
  }
  return a === '::1' || /^f[cd]/i.test(a);
}

/** Request headers only trusted from internal clients (Envoy's cleanInternalHeaders). */
const INTERNAL_ONLY_HEADERS = [
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-external-address',
  'x-envoy-force-trace',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-alt-response',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-hedge-on-per-try-timeout',
];

export class ConnectionManager implements NetworkFilter {
  private h1?: http.Server;
  private h2?: http2.Http2Server;
  private pendingConn: DownstreamConnection | undefined;

  constructor(
    readonly config: ConnectionManagerConfig,
    readonly stats: HttpConnectionManagerStats,
  ) {}

  onNewConnection(conn: DownstreamConnection): NetworkFilterStatus {
    const socket = conn.socket;
    connOf.set(socket, conn);
    this.stats.downstream_cx_total.inc();
    this.stats.downstream_cx_active.inc();
    socket.once('close', () => this.stats.downstream_cx_active.dec());
    const codec = this.config.codecType;
    if (codec === 'HTTP1') this.toHttp1(socket);
    else if (codec === 'HTTP2') this.toHttp2(socket);
    else if (conn.alpn === 'h2') this.toHttp2(socket);
    else if (conn.tls) this.toHttp1(socket);
    else this.sniff(socket);
    return NetworkFilterStatus.StopIteration;
  }

  /** codec_type AUTO without TLS: HTTP/2 if the client opens with the connection preface. */
  private sniff(socket: Socket): void {
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2Prefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2Prefix && seen.length < H2_PREFACE.length) return; // need more bytes to decide
      socket.off('data', onData);
      socket.pause();
      if (isH2Prefix) {
        // Node's HTTP/2 session reads the socket's handle directly and would miss the bytes
        // already read, so it gets a stream that replays them first.
        this.toHttp2(replaying(socket, seen));
      } else {
        // Node's HTTP/1 parser takes unshifted bytes before reading the handle.
        socket.unshift(seen);
        this.toHttp1(socket);
      }
    };
    socket.on('data', onData);
  }

  private toHttp1(socket: Socket): void {
    this.stats.downstream_cx_http1_total.inc();
    if (!this.h1) {
      this.h1 = http.createServer(
        {
          maxHeaderSize: this.config.maxRequestHeadersKb * 1024,
          // Envoy has no request or headers timeout unless configured.
          requestTimeout: 0,
          headersTimeout: 0,
          keepAliveTimeout: this.config.idleTimeoutMs,
          noDelay: true,
        },
        (req, res) => this.onRequest(req, res),
      );
      this.h1.keepAliveTimeout = this.config.idleTimeoutMs;
      this.h1.on('clientError', (err: NodeJS.ErrnoException, s: Socket) => this.onClientError(err, s));
    }
    this.h1.emit('connection', socket);
    socket.resume();
  }

  private toHttp2(socket: Socket | Duplex): void {
    this.stats.downstream_cx_http2_total.inc();
    if (!this.h2) {
      this.h2 = http2.createServer({ maxHeaderListPairs: 200 });
      this.h2.on('request', (req, res) => this.onRequest(req, res));
      // 'session' is emitted synchronously inside emit('connection'): tie it to its connection.
      this.h2.on('session', (session) => {
        if (this.pendingConn) sessionConn.set(session, this.pendingConn);
      });
      this.h2.on('sessionError', () => this.stats.downstream_cx_protocol_error.inc());
      this.h2.setTimeout(this.config.idleTimeoutMs);
    }
    this.pendingConn = connOf.get(socket);
    this.h2.emit('connection', socket);
    this.pendingConn = undefined;
    if (socket instanceof net.Socket) socket.resume();
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    this.stats.downstream_cx_protocol_error.inc();
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // Envoy answers malformed HTTP/1 with 400 (431 for oversized headers) and closes.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
    log.debug(`downstream protocol error: ${err.code ?? err.message}`);
    socket.end(
      `HTTP/1.1 ${status} ${body}\r\ncontent-length: ${body.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  private onRequest(req: DownstreamRequest, res: DownstreamResponse): void {
    const session = (req as http2.Http2ServerRequest).stream?.session;
    const socket = (session?.socket ?? req.socket) as Socket;
    const conn = session ? sessionConn.get(session) : connOf.get(socket);
    const isH2 = req.httpVersionMajor === 2;
    const info: DownstreamInfo = {
      remoteAddress: conn?.remoteAddress ?? socket.remoteAddress ?? '',
      remotePort: conn?.remotePort ?? socket.remotePort ?? 0,
      directRemoteAddress: conn?.remoteAddress ?? socket.remoteAddress ?? '',
      directRemotePort: conn?.remotePort ?? socket.remotePort ?? 0,
      localAddress: conn?.localAddress ?? socket.localAddress ?? '',
      localPort: conn?.localPort ?? socket.localPort ?? 0,
      protocol: isH2 ? 'HTTP/2' : req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1',
      scheme: conn?.tls ? 'https' : 'http',
    };
    const stats = this.stats;
    stats.downstream_rq_total.inc();
    (isH2 ? stats.downstream_rq_http2_total : stats.downstream_rq_http1_total).inc();
    stats.downstream_rq_active.inc();
    const stream = new ActiveStream(this.config, req, res, info);
    res.once('close', () => {
      stats.downstream_rq_active.dec();
      stats.downstream_rq_completed.inc();
      if (stream.streamInfo.responseCode) stats.responseClass(stream.streamInfo.responseCode);
    });
    this.mutateRequestHeaders(stream.requestHeaders, info);
    stream.start();
  }

  /** Envoy's ConnectionManagerUtility::mutateRequestHeaders, the parts Herald implements. */
  private mutateRequestHeaders(h: Headers, d: DownstreamInfo): void {
    const cfg = this.config;
    stripHopByHop(h);
    const xffRaw = h['x-forwarded-for'];
    const xff = (Array.isArray(xffRaw) ? xffRaw.join(',') : (xffRaw ?? ''))
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
    const n = cfg.xffNumTrustedHops;
    // The trusted client address (Envoy's XFF rules): with use_remote_address, the peer, or the
    // n-th address from the right of x-forwarded-for when n hops in front are trusted; without
    // it, the (n+1)-th from the right of x-forwarded-for when there is one.
    let client = d.directRemoteAddress;
    if (cfg.useRemoteAddress) {
      if (n > 0 && xff.length >= n) client = xff[xff.length - n]!;
    } else if (xff.length > n) {
      client = xff[xff.length - 1 - n]!;
    }
    if (client !== d.directRemoteAddress) {
      d.remoteAddress = client;
      d.remotePort = 0;
    }
    const edgeExternal = cfg.useRemoteAddress && !isInternalAddress(client);
    if (cfg.useRemoteAddress) {
      if (!cfg.skipXffAppend) xff.push(d.directRemoteAddress);
      if (xff.length) h['x-forwarded-for'] = xff.join(',');
      h['x-forwarded-proto'] = d.scheme;
      if (edgeExternal) {
        for (const k of INTERNAL_ONLY_HEADERS) delete h[k];
        h['x-envoy-external-address'] = client;
      } else {
        h['x-envoy-internal'] = 'true';
      }
    } else if (h['x-forwarded-proto'] === undefined) {
      h['x-forwarded-proto'] = d.scheme;
    }
    // An edge proxy replaces a client's request id unless told to keep it.
    if (
      cfg.generateRequestId &&
      (h['x-request-id'] === undefined || (edgeExternal && !cfg.preserveExternalRequestId))
    ) {
      h['x-request-id'] = randomUUID();
    }
  }
}
