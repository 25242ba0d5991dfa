// The HTTP connection manager at run time: takes over accepted sockets,
// picks the codec (HTTP/1.1 or HTTP/2, by codec_type or by sniffing the
// HTTP/2 connection preface for AUTO) and runs one ActiveStream per request.
//
// HTTP/1 is Herald's own codec (src/http/http1/); HTTP/2 is Node's http2
// server, fed sockets directly (it never listens itself).

import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import { http2Module } from '../common/lazy-modules.js';
import { Level, logger } from '../common/logger.js';
import { randomUUID } from '../common/random.js';
import type { FormatContext, Headers } from '../common/substitution-formatter.js';
import { StreamTimer, timerMs } from '../common/timers.js';
import { own, readDirect } from '../network/direct-read.js';
import {
  connectionAddresses,
  type DownstreamConnection,
  type NetworkFilter,
  NetworkFilterStatus,
} from '../network/filter.js';
import { PendingInput, pendingInput, socketFd, unsentOutput } from '../network/pending-input.js';
import { replayingStream } from '../network/replaying-stream.js';
import type { Counter, Gauge, Histogram, StatsScope } from '../stats/store.js';
import { ActiveStream, formatHeaders, stripHopByHop } from './active-stream.js';
import type { ServerStream } from './codec.js';
import type { ConnectionManagerConfig } from './conn-manager-config.js';
import type { DownstreamInfo } from './filter.js';
import { Http1ServerConnection, type Http1ServerOptions } from './http1/server-connection.js';
import { Http2ServerStreamAdapter } from './http2/server-stream.js';
import { type PathResult, transformPath } from './path-utility.js';
import { ResponseFlag, StreamInfo } from './stream-info.js';

const log = logger('http');
let nextStreamId = 0;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** The path result of a request without :path (CONNECT). */
const NO_PATH: PathResult = { kind: 'ok', path: '' };

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
  readonly downstream_rq_header_timeout: Counter;
  readonly downstream_cx_max_duration_reached: Counter;
  readonly downstream_cx_max_requests_reached: Counter;
  readonly downstream_rq_idle_timeout: Counter;
  readonly downstream_rq_timeout: Counter;
  readonly downstream_rq_max_duration_reached: Counter;
  readonly downstream_rq_too_large: Counter;
  readonly downstream_cx_upgrades_total: Counter;
  readonly downstream_cx_upgrades_active: Gauge;
  readonly downstream_rq_time: Histogram;
  readonly downstream_cx_length_ms: Histogram;

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
    this.downstream_rq_header_timeout = c('downstream_rq_header_timeout');
    this.downstream_cx_max_duration_reached = c('downstream_cx_max_duration_reached');
    this.downstream_cx_max_requests_reached = c('downstream_cx_max_requests_reached');
    this.downstream_rq_idle_timeout = c('downstream_rq_idle_timeout');
    this.downstream_rq_timeout = c('downstream_rq_timeout');
    this.downstream_rq_max_duration_reached = c('downstream_rq_max_duration_reached');
    this.downstream_rq_too_large = c('downstream_rq_too_large');
    this.downstream_cx_upgrades_total = c('downstream_cx_upgrades_total');
    this.downstream_cx_upgrades_active = scope.gauge('downstream_cx_upgrades_active');
    this.downstream_rq_time = scope.histogram('downstream_rq_time');
    this.downstream_cx_length_ms = scope.histogram('downstream_cx_length_ms');
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

/**
 * An HTTP/2 connection: its downstream connection, and its idle timeout (Envoy's: no open
 * streams for idle_timeout), armed and disarmed only as the open stream count leaves and
 * returns to zero. Node's own session timeout is pushed back on every frame and stream event
 * instead, and destroys the session without a GOAWAY.
 */
class H2Session {
  private open = 0;
  /** Streams opened since the last quiet-session check. */
  private opened = 0;
  private quietChecks = 0;
  private dataWaiting = false;
  private lastBytesRead = 0;
  private probing: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    readonly conn: DownstreamConnection,
    private readonly idle: StreamTimer | undefined,
    private readonly idleMs: number,
    private readonly session: http2.Http2Session,
    private readonly liveness: Http2Keepalive | undefined,
  ) {
    idle?.arm(idleMs);
    this.scheduleKeepalive();
    session.once('close', () => {
      clearTimeout(this.probing);
      clearTimeout(this.keepalive);
    });
  }

  streamOpened(): void {
    this.opened++;
    if (this.open++ === 0) this.idle?.disarm();
  }

  streamClosed(): void {
    if (--this.open === 0) this.idle?.arm(this.idleMs);
  }

  /**
   * http2_protocol_options.connection_keepalive: a PING every interval (with jitter). Without it,
   * a check every DEAD_SESSION_CHECK_MS (see check()): nothing per frame.
   */
  private scheduleKeepalive(): void {
    const k = this.liveness;
    if (k) {
      const jitter = (k.intervalMs * k.jitterPercent * Math.random()) / 100;
      this.keepalive = setTimeout(() => this.probe(k.timeoutMs), timerMs(k.intervalMs + jitter));
    } else {
      this.opened = 0;
      this.keepalive = setTimeout(() => this.check(), DEAD_SESSION_CHECK_MS);
    }
    this.keepalive.unref();
  }

  /**
   * When nghttp2 ends a session itself (a GOAWAY for a protocol error it finds, or its
   * stream-reset rate limit), Node stops reading the socket and tells JavaScript nothing: the
   * client's FIN is never read and the connection would stay open (CLOSE-WAIT). A session that
   * opened no stream since the last check is asked of the kernel: a FIN waiting, or bytes waiting
   * at two checks in a row with nothing read between them, means Node has stopped reading, and
   * the connection is closed. After DEAD_SESSION_QUIET_MS without a stream, a PING probes it too
   * (a session nghttp2 ended, whose client is silent, never answers).
   */
  private check(): void {
    const session = this.session;
    if (session.closed || session.destroyed) return;
    if (this.opened === 0) {
      const socket = this.conn.socket;
      const p = pendingInput(socketFd(socket));
      // Quiet for long (or the kernel cannot be asked): a PING finds a session that is not read
      // even when its client is silent.
      if (++this.quietChecks * DEAD_SESSION_CHECK_MS >= DEAD_SESSION_QUIET_MS) {
        this.quietChecks = 0;
        this.probe(DEAD_SESSION_PING_TIMEOUT_MS);
        return;
      }
      if (p !== PendingInput.Unknown) {
        const read = socket.bytesRead;
        // Node also stops reading while a write waits on a client that does not read: that client
        // is slow, not gone, and its unsent bytes say so.
        const stuck =
          p === PendingInput.Data &&
          this.dataWaiting &&
          read === this.lastBytesRead &&
          unsentOutput(socketFd(socket)) === 0;
        if (p === PendingInput.Closed || stuck) {
          log.debug(`HTTP/2 connection ${this.conn.id}: no longer read (nghttp2 ended it); closing`);
          session.destroy();
          return;
        }
        this.dataWaiting = p === PendingInput.Data;
        this.lastBytesRead = read;
      }
    } else {
      this.dataWaiting = false;
      this.quietChecks = 0;
    }
    this.scheduleKeepalive();
  }

  /** After a protocol error Node's binding reported (see mapSessionErrors): is the session still read? */
  verify(error: Error): void {
    clearTimeout(this.keepalive);
    if (this.probing) return; // the PING in flight decides
    this.probe(PROTOCOL_ERROR_PING_TIMEOUT_MS, () =>
      this.session.destroy(error, http2Module().constants.NGHTTP2_PROTOCOL_ERROR),
    );
  }

  /** Sends a PING; no ACK within `timeoutMs` closes the connection (a session that is not read never answers). */
  private probe(timeoutMs: number, onTimeout?: () => void): void {
    const session = this.session;
    if (this.probing || session.closed || session.destroyed) return;
    this.probing = setTimeout(() => {
      log.debug(`HTTP/2 connection ${this.conn.id}: no PING ACK within ${timeoutMs} ms; closing`);
      if (onTimeout) onTimeout();
      else session.destroy();
    }, timerMs(timeoutMs));
    this.probing.unref();
    const acked = () => {
      clearTimeout(this.probing);
      this.probing = undefined;
      if (session.closed || session.destroyed) return;
      this.scheduleKeepalive();
    };
    try {
      if (!session.ping((err) => (err ? undefined : acked()))) session.destroy();
    } catch {
      session.destroy();
    }
  }
}
const h2Sessions = new WeakMap<http2.Http2Session, H2Session>();

function replaying(socket: Socket, head: Buffer): Duplex {
  const d = replayingStream(socket, head);
  const conn = connOf.get(socket);
  if (conn) connOf.set(d, conn);
  return d;
}

/** http2_protocol_options.connection_keepalive. */
export interface Http2Keepalive {
  intervalMs: number;
  timeoutMs: number;
  /** interval_jitter: up to this percentage of the interval is added to each interval. */
  jitterPercent: number;
}

/** Whether a comma-separated header value (e.g. `connection`) lists `token` (lower case) as a whole token. */
function hasToken(value: string, token: string): boolean {
  for (const t of value.split(',')) if (t.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * Ends `socket` (flushing what is queued) and destroys it if it is still open after `ms`
 * (delayed_close_timeout; 0: at once).
 */
function closeSoon(socket: Socket | Duplex, ms: number): void {
  if (socket.destroyed) return;
  if (ms <= 0) {
    socket.destroy();
    return;
  }
  if (!socket.writableEnded) socket.end();
  const t = setTimeout(() => socket.destroy(), timerMs(ms));
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

/** How often a session without keepalive is checked for having been ended by nghttp2. */
const DEAD_SESSION_CHECK_MS = 2_000;
/** A session that opens no stream for this long gets a PING (see H2Session.check()). */
const DEAD_SESSION_QUIET_MS = 60_000;
const DEAD_SESSION_PING_TIMEOUT_MS = 5_000;
/** How long a session has to answer the PING that follows a protocol error (H2Session.verify). */
const PROTOCOL_ERROR_PING_TIMEOUT_MS = 1_000;

// nghttp2 library error codes that Node reports to JavaScript (NGHTTP2_ERR_*).
const NGHTTP2_ERR_PROTO = -505;
const NGHTTP2_ERR_FLOW_CONTROL = -524;

/**
 * Node ends a session on an error its binding reports with GOAWAY INTERNAL_ERROR whatever the
 * cause. A flow-control window past 2^31-1 gets FLOW_CONTROL_ERROR instead (RFC 9113 6.9.1).
 * A generic protocol error is what Node's binding also reports, by itself, for an unsolicited
 * PING or SETTINGS ACK, which RFC 9113 6.7 says to ignore, and the two cannot be told apart
 * here: the session is asked with a PING instead (H2Session.verify). One that answers goes on;
 * one that does not (nghttp2 failed on the input and stopped reading) is closed.
 */
function mapSessionErrors(session: http2.Http2Session): void {
  const destroy = session.destroy;
  session.destroy = function (this: http2.Http2Session, error?: Error, code?: number) {
    const errno = (error as { errno?: number } | undefined)?.errno;
    if (
      code === undefined &&
      errno !== undefined &&
      (error as { code?: string }).code === 'ERR_HTTP2_ERROR'
    ) {
      if (errno === NGHTTP2_ERR_PROTO && !this.destroyed && !this.closed) {
        const h2s = h2Sessions.get(this);
        if (h2s) {
          h2s.verify(error!);
          return this;
        }
      }
      if (errno === NGHTTP2_ERR_FLOW_CONTROL) code = http2Module().constants.NGHTTP2_FLOW_CONTROL_ERROR;
    }
    return destroy.call(this, error, code);
  } as typeof session.destroy;
}

/** Removes the port from :authority: any port, or only the listener's own (`port` >= 0). */
function stripPort(h: Headers, port: number): void {
  const a = h[':authority'];
  if (typeof a !== 'string') return;
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(a);
  if (m && (port < 0 || Number(m[2]) === port)) h[':authority'] = m[1]!;
}

function isLoopback(a: string): boolean {
  return a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}

let hostAddress: string | undefined;
/** The host's first non-loopback IPv4 address (Envoy's "local address"), else the listener's. */
function localAddress(fallback: string): string {
  if (hostAddress === undefined) {
    hostAddress = '';
    for (const list of Object.values(os.networkInterfaces()))
      for (const i of list ?? [])
        if (!hostAddress && i.family === 'IPv4' && !i.internal) hostAddress = i.address;
  }
  return hostAddress || fallback;
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
const INTERNAL_ONLY_HEADERS = new Set([
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-external-address',
  'x-envoy-force-trace',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-original-url',
  'x-envoy-retriable-header-names',
  'x-envoy-retriable-status-codes',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-alt-response',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-hedge-on-per-try-timeout',
]);

/** Removes the internal-only headers; one pass over the (few) request headers, not ~20 lookups. */
function cleanInternalHeaders(h: Headers): void {
  for (const k in h) {
    // 'x-envoy-' prefix checked by its first and eighth characters before the set lookup.
    if (k.charCodeAt(0) === 120 && k.charCodeAt(7) === 45 && INTERNAL_ONLY_HEADERS.has(k)) delete h[k];
  }
}

export class ConnectionManager implements NetworkFilter {
  private h2?: http2.Http2Server;
  private pendingConn: DownstreamConnection | undefined;
  private http1Options: Http1ServerOptions | undefined;

  constructor(
    readonly config: ConnectionManagerConfig,
    readonly stats: HttpConnectionManagerStats,
  ) {}

  onNewConnection(conn: DownstreamConnection): NetworkFilterStatus {
    const socket = conn.socket;
    connOf.set(socket, conn);
    this.stats.downstream_cx_total.inc();
    this.stats.downstream_cx_active.inc();
    const openedAt = Date.now();
    socket.once('close', () => {
      this.stats.downstream_cx_active.dec();
      this.stats.downstream_cx_length_ms.recordValue(Date.now() - openedAt);
      // A closed socket stays reachable until a full GC (see releaseClosedSocket): so would this.
      connOf.delete(socket);
    });
    const codec = this.config.codecType;
    if (codec === 'HTTP1') this.toHttp1(socket, conn);
    else if (codec === 'HTTP2') this.toHttp2(conn.tls ? replaying(socket, Buffer.alloc(0)) : socket);
    // Node's HTTP/2 session cannot drive a TLS socket made elsewhere through its handle; it
    // gets a plain stream over the decrypted bytes instead.
    else if (conn.alpn === 'h2') this.toHttp2(conn.tls ? replaying(socket, Buffer.alloc(0)) : socket);
    else if (conn.tls) this.toHttp1(socket, conn);
    else this.sniff(socket, conn);
    return NetworkFilterStatus.StopIteration;
  }

  /** codec_type AUTO without TLS: HTTP/2 if the client opens with the connection preface. */
  /**
   * codec_type AUTO without TLS: HTTP/2 if the client opens with the connection preface. The
   * first bytes are read, not peeked (peeking cannot wait for data without polling). HTTP/1 is
   * handed the bytes read; HTTP/2 finds them
   * back in the socket (unshift), where Node's session takes them and keeps the native handle.
   */
  private sniff(socket: Socket, conn: DownstreamConnection): void {
    // A client that closes, or stays silent past the idle timeout, before saying enough is dropped.
    const idleMs = this.config.idleTimeoutMs;
    const idle = idleMs > 0 ? new StreamTimer(() => socket.destroy()) : undefined;
    idle?.arm(idleMs);
    const giveUp = () => {
      idle?.disarm();
      socket.destroy();
    };
    socket.once('end', giveUp);
    socket.once('close', () => idle?.disarm());
    let seen: Buffer | undefined;
    let decided = false;
    // `transient`: the chunk is a view of the shared read buffer (network/direct-read).
    const onBytes = (chunk: Buffer, transient: boolean) => {
      if (decided) {
        // Node's HTTP/2 session reads the handle itself from the handoff on.
        log.error('bytes read after an HTTP/2 handoff; closing the connection');
        socket.destroy();
        return;
      }
      const all = seen ? Buffer.concat([seen, chunk]) : chunk;
      const n = Math.min(all.length, H2_PREFACE.length);
      const isH2Prefix = all.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2Prefix && all.length < H2_PREFACE.length) {
        seen = transient && all === chunk ? own(chunk) : all; // need more bytes to decide
        return;
      }
      socket.off('end', giveUp);
      idle?.disarm();
      if (isH2Prefix) {
        decided = true;
        if (!direct) socket.off('data', onData);
        socket.pause();
        socket.unshift(transient && all === chunk ? own(chunk) : all);
        this.toHttp2(socket);
      } else {
        if (!direct) {
          socket.off('data', onData);
          socket.pause();
        }
        // The HTTP/1 connection takes the reads over (and parses these bytes within this read).
        this.toHttp1(socket, conn, all);
      }
    };
    const onData = (chunk: Buffer) => onBytes(chunk, false);
    const direct = socket instanceof net.Socket && readDirect(socket, (c) => onBytes(c, true));
    if (!direct) socket.on('data', onData);
    socket.resume();
  }

  /** `initial`: bytes already read from the socket (while sniffing), parsed first. */
  private toHttp1(socket: Socket, conn: DownstreamConnection, initial?: Buffer): void {
    this.stats.downstream_cx_http1_total.inc();
    const cfg = this.config;
    // The options are the same for every connection of a listener: built once, not per connection.
    let options = this.http1Options;
    if (options?.bufferLimit !== conn.bufferLimit) {
      options = this.http1Options = {
        maxHeaderBytes: cfg.maxRequestHeadersKb * 1024,
        maxHeaderCount: cfg.maxHeadersCount,
        idleTimeoutMs: cfg.idleTimeoutMs,
        acceptHttp10: cfg.acceptHttp10,
        bufferLimit: conn.bufferLimit,
        serverName: cfg.serverName,
        requestHeadersTimeoutMs: cfg.requestHeadersTimeoutMs,
        streamIdleTimeoutMs: cfg.streamIdleTimeoutMs,
        maxConnectionDurationMs: cfg.maxConnectionDurationMs,
        maxRequestsPerConnection: cfg.maxRequestsPerConnection,
        delayedCloseTimeoutMs: cfg.delayedCloseTimeoutMs,
      };
    }
    const http1 = new Http1ServerConnection(socket, options, conn.tls ? 'https' : 'http', {
      onStream: (s) => this.onStream(s, conn),
      onProtocolError: (e) => {
        // A request the codec rejects still counts as a request answered with its status.
        const st = this.stats;
        st.downstream_cx_protocol_error.inc();
        st.downstream_rq_total.inc();
        st.downstream_rq_http1_total.inc();
        st.responseClass(e.status);
        this.logProtocolError(conn, e.status, e.details);
      },
      onLimit: (which) => this.onLimit(which),
    });
    conn.onDrain?.((closeIdle) => http1.drain(closeIdle));
    socket.resume();
    if (initial) http1.receive(initial);
  }

  private toHttp2(socket: Socket | Duplex): void {
    this.stats.downstream_cx_http2_total.inc();
    if (!this.h2) {
      const o = this.config.http2;
      this.h2 = http2Module().createServer({
        maxHeaderListPairs: this.config.maxHeadersCount + 8,
        settings: {
          maxConcurrentStreams: o?.maxConcurrentStreams ?? 2147483647,
          ...(o?.initialStreamWindowSize !== undefined
            ? { initialWindowSize: o.initialStreamWindowSize }
            : {}),
          // allow_connect: RFC 8441 extended CONNECT (WebSocket over HTTP/2).
          ...(this.config.http2AllowConnect ? { enableConnectProtocol: true } : {}),
        },
      });
      this.h2.on('stream', (stream, headers, flags) => {
        const h2s = h2Sessions.get(stream.session as http2.Http2Session);
        if (!h2s) {
          stream.close(2);
          return;
        }
        const conn = h2s.conn;
        h2s.streamOpened();
        this.onStream(new Http2ServerStreamAdapter(stream, headers, conn.bufferLimit, flags, h2s), conn);
      });
      // 'session' is emitted synchronously inside emit('connection'): tie it to its connection.
      this.h2.on('session', (session) => {
        mapSessionErrors(session);
        if (this.pendingConn) {
          const idleMs = this.config.idleTimeoutMs;
          // Idle: a GOAWAY, and the connection closes (Envoy drains an idle HTTP/2 connection).
          const idle =
            idleMs > 0
              ? new StreamTimer(() => {
                  if (!session.closed && !session.destroyed) session.close();
                })
              : undefined;
          if (idle) session.once('close', () => idle.disarm());
          h2Sessions.set(
            session,
            new H2Session(this.pendingConn, idle, idleMs, session, this.config.http2Keepalive),
          );
          // Draining, as Envoy does it: a GOAWAY announcing the shutdown (last stream id 2^31-1, so
          // nothing in flight is refused), then after drain_timeout the final GOAWAY; open streams finish.
          const drainMs = this.config.drainTimeoutMs;
          this.pendingConn.onDrain?.(() => {
            if (session.closed || session.destroyed) return;
            try {
              session.goaway(0, 2147483647);
            } catch {
              // The session is going away already.
            }
            const t = setTimeout(() => {
              if (!session.closed) session.close();
            }, timerMs(drainMs));
            t.unref();
            session.once('close', () => clearTimeout(t));
          });
        }
        const win = this.config.http2?.initialConnectionWindowSize;
        if (win !== undefined) session.once('localSettings', () => session.setLocalWindowSize(win));
        const cfg = this.config;
        if (cfg.maxConnectionDurationMs > 0) {
          const t = setTimeout(() => {
            this.onLimit('max_duration');
            if (!session.closed) session.close(); // GOAWAY; open streams finish
          }, timerMs(cfg.maxConnectionDurationMs));
          session.once('close', () => clearTimeout(t));
        }
        if (cfg.maxRequestsPerConnection > 0) {
          let n = 0;
          session.on('stream', () => {
            if (++n === cfg.maxRequestsPerConnection) {
              this.onLimit('max_requests');
              session.close();
            }
          });
        }
      });
      this.h2.on('sessionError', () => this.stats.downstream_cx_protocol_error.inc());
    }
    const conn = connOf.get(socket);
    // HTTP/2 has no half-close: the client's FIN ends the connection, as in Envoy. Listener sockets
    // allow half-open (for tcp_proxy), so Node's session alone would keep it in CLOSE-WAIT.
    if (conn) conn.socket.once('end', () => closeSoon(conn.socket, this.config.delayedCloseTimeoutMs));
    this.pendingConn = conn;
    this.h2.emit('connection', socket);
    this.pendingConn = undefined;
    // Bytes put back after sniffing are the session's to take (on its next tick): resuming the
    // socket would emit them to no one. Sniffing left the handle reading anyway.
    if (socket instanceof net.Socket && socket.readableLength === 0) socket.resume();
  }

  /** A request the codec rejected is still logged, as Envoy does: its status, details and DPE. */
  private logProtocolError(conn: DownstreamConnection, status: number, details: string): void {
    const loggers = this.config.accessLoggers;
    if (loggers.length === 0) return;
    const info = new StreamInfo();
    info.responseCode = status;
    info.responseCodeDetails = details;
    info.connectionTerminationDetails = details;
    info.connectionId = conn.id;
    info.setFlag(ResponseFlag.DPE);
    const a = connectionAddresses(conn);
    const ctx: FormatContext = { info, protocol: 'HTTP/1.1', ...a };
    for (const l of loggers) l.log(ctx);
  }

  private onLimit(which: 'headers_timeout' | 'idle_headers' | 'max_duration' | 'max_requests'): void {
    const st = this.stats;
    if (which === 'headers_timeout') st.downstream_rq_header_timeout.inc();
    else if (which === 'idle_headers') st.downstream_rq_idle_timeout.inc();
    else if (which === 'max_duration') st.downstream_cx_max_duration_reached.inc();
    else st.downstream_cx_max_requests_reached.inc();
  }

  private readonly onStreamComplete = (a: ActiveStream): void => {
    const stats = this.stats;
    stats.downstream_rq_active.dec();
    stats.downstream_rq_completed.inc();
    stats.downstream_rq_time.recordValue(a.streamInfo.elapsedMs());
    const code = a.streamInfo.responseCode;
    if (code) stats.responseClass(code);
  };

  private onStream(s: ServerStream, conn: DownstreamConnection): void {
    // A literal with every field (no spread): one object shape for all streams.
    const info: DownstreamInfo = {
      remoteAddress: conn.remoteAddress,
      remotePort: conn.remotePort,
      directRemoteAddress: conn.remoteAddress,
      directRemotePort: conn.remotePort,
      localAddress: conn.localAddress,
      localPort: conn.localPort,
      protocol: s.protocol,
      scheme: conn.tls ? 'https' : 'http',
      bufferLimit: conn.bufferLimit,
    };
    const stats = this.stats;
    stats.downstream_rq_total.inc();
    (s.protocol === 'HTTP/2' ? stats.downstream_rq_http2_total : stats.downstream_rq_http1_total).inc();
    stats.downstream_rq_active.inc();
    const h = s.headers;
    // An Upgrade (e.g. WebSocket) goes on only if upgrade_configs allow it (the router decides,
    // as a route may override the HCM); otherwise Envoy answers 403 (upgrade_failed).
    const isUpgrade =
      s.protocol !== 'HTTP/2' && h.upgrade !== undefined && hasToken(String(h.connection ?? ''), 'upgrade');
    let upgradeType = isUpgrade ? String(h.upgrade).toLowerCase() : undefined;
    // CONNECT is an upgrade of its own type; HTTP/2 extended CONNECT (RFC 8441) stands for the
    // HTTP/1 upgrade named by :protocol and is handled as that GET + Upgrade, as Envoy's codec does.
    const connect = h[':method'] === 'CONNECT';
    if (connect && upgradeType === undefined) {
      const protocol = h[':protocol'];
      if (typeof protocol === 'string' && s.protocol === 'HTTP/2') {
        upgradeType = protocol.toLowerCase();
        h[':method'] = 'GET';
        delete h[':protocol'];
      } else upgradeType = 'connect';
    }
    this.mutateRequestHeaders(h, info);
    if (upgradeType && upgradeType !== 'connect') {
      // Hop-by-hop in general, but an upgrade travels on.
      h.connection = 'upgrade';
      h.upgrade = upgradeType;
    }
    // A CONNECT target keeps its port (RFC 9110 9.3.6: the port is part of it).
    if (this.config.stripHostPort !== 'none' && upgradeType !== 'connect')
      stripPort(h, this.config.stripHostPort === 'any' ? -1 : info.localPort);
    const path = h[':path'] as string | undefined;
    // A CONNECT without :path has nothing to normalize.
    const pathResult: PathResult =
      path === undefined && connect ? NO_PATH : transformPath(path ?? '/', this.config.path);
    if (pathResult.kind === 'ok' && pathResult !== NO_PATH) h[':path'] = pathResult.path;
    const streamId = nextStreamId++;
    if (log.on(Level.debug))
      log.debug(
        `[C${conn.id}][S${streamId}] request headers complete (end_stream=${s.body.ended}):\n${formatHeaders(h)}`,
      );
    const stream = new ActiveStream(this.config, s, info, stats, this.onStreamComplete, upgradeType);
    stream.connectionId = conn.id;
    stream.streamId = streamId;
    const si = stream.streamInfo;
    si.connectionId = conn.id;
    si.requestedServerName = conn.serverName;
    const rid = h['x-request-id'];
    si.streamId = typeof rid === 'string' ? rid : String(streamId);
    if (pathResult.kind === 'reject') {
      stream.sendLocalReply(400, 'Bad Request', { details: pathResult.details });
      return;
    }
    if (pathResult.kind === 'redirect') {
      stream.sendLocalReply(307, '', {
        details: 'path_has_escaped_slashes',
        headers: { location: pathResult.location },
      });
      return;
    }
    stream.upgradeType = upgradeType;
    if (s.protocol !== 'HTTP/2' && h[':authority'] === undefined && s.protocol === 'HTTP/1.1') {
      stream.sendLocalReply(400, 'missing host header', { details: 'missing_host_header' });
      return;
    }
    stream.start();
  }

  /** Envoy's ConnectionManagerUtility::mutateRequestHeaders, the parts Herald implements. */
  private mutateRequestHeaders(h: Headers, d: DownstreamInfo): void {
    const cfg = this.config;
    stripHopByHop(h);
    // A client never decides that it is internal.
    if (h['x-envoy-internal'] !== undefined) delete h['x-envoy-internal'];
    const xffRaw = h['x-forwarded-for'];
    const xff =
      xffRaw === undefined
        ? []
        : (Array.isArray(xffRaw) ? xffRaw.join(',') : xffRaw)
            .split(',')
            .map((a) => a.trim())
            .filter(Boolean);
    const n = cfg.xffNumTrustedHops;
    // The trusted client address and whether it may be checked for "internal" (Envoy's XFF rules):
    // with use_remote_address, the peer (or the n-th address from the right of XFF when n hops in
    // front are trusted), checkable only if the client sent no XFF; without it, the (n+1)-th address
    // from the right of XFF, checkable only if XFF holds that single address.
    let client: string | undefined;
    let singleAddress: boolean;
    if (cfg.useRemoteAddress) {
      singleAddress = xff.length === 0;
      client = n > 0 && xff.length >= n ? xff[xff.length - n] : d.directRemoteAddress;
      if (!cfg.skipXffAppend) {
        // Envoy appends its own address for a loopback peer, the peer otherwise.
        xff.push(isLoopback(d.directRemoteAddress) ? localAddress(d.localAddress) : d.directRemoteAddress);
        h['x-forwarded-for'] = xff.join(',');
      }
      h['x-forwarded-proto'] = d.scheme;
    } else {
      client = xff.length > n ? xff[xff.length - 1 - n] : undefined;
      singleAddress = xff.length === 1 && n === 0;
      if (h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = d.scheme;
    }
    const internal = singleAddress && client !== undefined && isInternalAddress(client);
    if (client !== undefined && client !== d.directRemoteAddress) {
      d.remoteAddress = client;
      d.remotePort = 0;
    }
    const edge = !internal && cfg.useRemoteAddress;
    if (internal) {
      h['x-envoy-internal'] = 'true';
    } else {
      // Control headers (retries, timeouts, ...) are honoured only from internal clients.
      cleanInternalHeaders(h);
      if (edge) h['x-envoy-external-address'] = d.remoteAddress;
    }
    // An edge proxy replaces a client's request id unless told to keep it.
    if (
      cfg.generateRequestId &&
      (h['x-request-id'] === undefined || (edge && !cfg.preserveExternalRequestId))
    ) {
      h['x-request-id'] = randomUUID();
    }
  }
}
