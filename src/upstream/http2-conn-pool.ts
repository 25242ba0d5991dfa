// Upstream HTTP/2: one multiplexed session per host (Node's http2 client),
// replaced when it closes or receives GOAWAY.

import type http2 from 'node:http2';
import { http2Module } from '../common/lazy-modules.js';
import type { Headers } from '../common/substitution-formatter.js';
import { timerMs } from '../common/timers.js';
import { toHttp2Headers } from '../http/http2/headers.js';
import { nextConnectionId } from '../network/connection-id.js';
import type { ClusterStats } from './cluster.js';
import type { Http2Options } from './cluster-config.js';
import { NOOP_REQUEST } from './deferred-request.js';
import type { Host } from './host.js';
import { PendingQueue } from './pending-queue.js';
import type { ResourceManager } from './resource-manager.js';
import { connectToHost, type UpstreamTlsConfig } from './transport-socket.js';
import type {
  NewStreamOptions,
  UpstreamCallbacks,
  UpstreamConnectionInfo,
  UpstreamRequest,
} from './upstream-request.js';

const NGHTTP2_CANCEL = 8;
const NGHTTP2_REFUSED_STREAM = 7;
const connectedSessions = new WeakSet<http2.ClientHttp2Session>();

class Http2UpstreamStream implements UpstreamRequest {
  readonly started = true;
  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    private readonly connectionId: number,
  ) {}

  connectionInfo(): UpstreamConnectionInfo {
    const s = this.stream.session?.socket;
    return {
      localAddress: s?.localAddress ?? '',
      localPort: s?.localPort ?? 0,
      connectionId: this.connectionId,
    };
  }

  sendData(chunk: Buffer, endStream: boolean): boolean {
    if (this.stream.destroyed) return true;
    if (endStream) {
      this.stream.end(chunk.length ? chunk : undefined);
      return true;
    }
    return this.stream.write(chunk);
  }

  sendTrailers(trailers: Headers): void {
    if (this.stream.destroyed) return;
    // Sent from 'wantTrailers' once the body has ended.
    this.pendingTrailers = toHttp2Headers(trailers);
    this.stream.end();
  }

  pendingTrailers: http2.OutgoingHttpHeaders | undefined;

  onDrain(cb: () => void): void {
    this.stream.once('drain', cb);
  }

  abort(): void {
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_CANCEL);
  }

  pauseResponse(): void {
    this.stream.pause();
  }

  resumeResponse(): void {
    this.stream.resume();
  }
}

interface SessionEntry {
  id: number;
  session: http2.ClientHttp2Session;
  active: number;
  total: number;
  usable: boolean;
}

export class Http2ConnPool {
  /** Sessions that take new streams, oldest first. */
  private sessions: SessionEntry[] = [];

  constructor(
    readonly host: Host,
    readonly stats: ClusterStats,
    private readonly idleTimeoutMs: number,
    /** 0 = unlimited; at the limit the session takes no new streams and closes once idle. */
    private readonly maxRequestsPerConnection: number,
    private readonly tls: UpstreamTlsConfig | undefined,
    private readonly h2: Http2Options,
    private readonly limits: { resources: ResourceManager; perHostMaxConnections: number | undefined },
  ) {
    this.pending = new PendingQueue(stats, () => limits.resources);
  }

  /** Requests waiting for stream capacity (every session full and max_connections reached). */
  private readonly pending: PendingQueue;

  /** A session with room for a stream (max_concurrent_streams, and the peer's own limit), or a new one. */
  /** A connection already made (by auto_config's protocol probe), used for the next session. */
  adopted: import('node:net').Socket | undefined;

  private sessionWithRoom(): SessionEntry | undefined {
    for (const e of this.sessions) {
      if (!e.usable || e.session.closed || e.session.destroyed) continue;
      const peerMax = e.session.remoteSettings?.maxConcurrentStreams ?? Number.POSITIVE_INFINITY;
      if (e.active < Math.min(this.h2.maxConcurrentStreams, peerMax)) return e;
    }
    return undefined;
  }

  /** A session with room, or a new one when the circuit breakers allow (or the pool has none). */
  private getSession(connectTimeoutMs: number): SessionEntry | undefined {
    const room = this.sessionWithRoom();
    if (room) return room;
    const { resources, perHostMaxConnections: perHost } = this.limits;
    const allowed =
      resources.connections.canCreate() && (perHost === undefined || this.host.activeConnections < perHost);
    if (!allowed) {
      this.stats.upstream_cx_overflow.inc();
      if (this.sessions.length > 0) return undefined;
    }
    return this.createSession(connectTimeoutMs);
  }

  private createSession(connectTimeoutMs: number): SessionEntry {
    const host = this.host;
    const stats = this.stats;
    const tlsCfg = this.tls;
    const session = http2Module().connect(`${tlsCfg ? 'https' : 'http'}://${host.addressString}`, {
      ...(this.h2.initialStreamWindowSize !== undefined
        ? { settings: { initialWindowSize: this.h2.initialStreamWindowSize } }
        : {}),
      createConnection: () => {
        const a = this.adopted;
        this.adopted = undefined;
        if (a) return a;
        return connectToHost(
          host,
          tlsCfg ? { ...tlsCfg, options: { ALPNProtocols: ['h2'], ...tlsCfg.options } } : undefined,
        ).socket;
      },
    });
    stats.upstream_cx_total.inc();
    stats.upstream_cx_active.inc();
    stats.upstream_cx_http2_total.inc();
    this.limits.resources.connections.inc();
    host.activeConnections++;
    let connected = false;
    const openedAt = Date.now();
    const timer = setTimeout(() => {
      stats.upstream_cx_connect_timeout.inc();
      session.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
    }, timerMs(connectTimeoutMs));
    const entry: SessionEntry = { id: nextConnectionId(), session, active: 0, total: 0, usable: true };
    session.once('connect', () => {
      connected = true;
      stats.upstream_cx_connect_ms.recordValue(Date.now() - openedAt);
      host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_SUCCESS');
      connectedSessions.add(session);
      clearTimeout(timer);
      if (this.h2.initialConnectionWindowSize !== undefined)
        session.setLocalWindowSize(this.h2.initialConnectionWindowSize);
    });
    const forget = () => {
      entry.usable = false;
      this.sessions = this.sessions.filter((e) => e !== entry);
    };
    session.once('close', () => {
      clearTimeout(timer);
      stats.upstream_cx_active.dec();
      this.limits.resources.connections.dec();
      host.activeConnections--;
      if (connected) stats.upstream_cx_length_ms.recordValue(Date.now() - openedAt);
      forget();
      if (!connected) {
        stats.upstream_cx_connect_fail.inc();
        host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_FAILED');
        // As in Envoy, a connect failure fails the requests waiting for capacity.
        this.pending.failAll('connection_failure', 'connection failure');
      } else this.drainPending(connectTimeoutMs);
    });
    session.once('goaway', forget);
    session.on('error', forget);
    session.setTimeout(timerMs(this.idleTimeoutMs), () => {
      stats.upstream_cx_idle_timeout.inc();
      session.close();
    });
    this.sessions.push(entry);
    return entry;
  }

  newStream(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): UpstreamRequest {
    const resources = this.limits.resources;
    const entry = this.getSession(opts.connectTimeoutMs);
    if (!entry) return this.pending.add(headers, opts, cb);
    if (!resources.requests.canCreate()) return this.pending.overflow(cb);
    return this.startStream(entry, headers, opts, cb);
  }

  /** Capacity freed (a stream or session ended): waiting requests take it, oldest first. */
  private drainPending(connectTimeoutMs: number): void {
    while (this.pending.length > 0) {
      const entry = this.getSession(connectTimeoutMs);
      if (!entry) return;
      const req = this.pending.take()!;
      if (!this.limits.resources.requests.canCreate()) {
        this.stats.upstream_rq_pending_overflow.inc();
        req.cb.onReset('overflow', 'overflow');
        continue;
      }
      req.attach(this.startStream(entry, req.headers, req.opts, req.cb));
    }
  }

  private startStream(
    entry: SessionEntry,
    headers: Headers,
    opts: NewStreamOptions,
    cb: UpstreamCallbacks,
  ): UpstreamRequest {
    const session = entry.session;
    const method = headers[':method'] as string;
    // An HTTP/1 upgrade (WebSocket) goes up as an extended CONNECT (RFC 8441) naming it in
    // :protocol, whatever its method, as Envoy's transformUpgradeRequestFromH1toH2 does.
    const upgrade =
      opts.upgrade && method !== 'CONNECT' ? (headers.upgrade as string | undefined) : undefined;
    // A CONNECT carries only :method and :authority (RFC 9113 8.5).
    const pseudo: http2.OutgoingHttpHeaders =
      method === 'CONNECT'
        ? { ':method': method, ':authority': headers[':authority'] as string }
        : {
            ':method': method,
            ':path': headers[':path'] as string,
            ':authority': headers[':authority'] as string,
            ':scheme': this.tls ? 'https' : 'http',
          };
    if (upgrade !== undefined) {
      pseudo[':method'] = 'CONNECT';
      pseudo[':protocol'] = upgrade;
    }
    const out = toHttp2Headers(headers, pseudo);
    if (upgrade !== undefined && out['content-length'] === '0') delete out['content-length'];
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(out, { endStream: opts.endStream, waitForTrailers: !opts.endStream });
    } catch (e) {
      // Headers Node's HTTP/2 cannot send: fail this request, not the process.
      queueMicrotask(() => cb.onReset('protocol_error', (e as Error).message));
      return NOOP_REQUEST;
    }
    entry.active++;
    const resources = this.limits.resources;
    resources.requests.inc();
    stream.once('close', () => {
      entry.active--;
      resources.requests.dec();
      if (this.pending.length > 0) this.drainPending(opts.connectTimeoutMs);
    });
    const max = this.maxRequestsPerConnection;
    if (max > 0 && ++entry.total >= max) {
      // Retire the session: graceful close lets its streams finish.
      entry.usable = false;
      session.close();
    }
    const wrapper = new Http2UpstreamStream(stream, entry.id);
    stream.on('wantTrailers', () => {
      try {
        stream.sendTrailers(wrapper.pendingTrailers ?? {});
      } catch {
        stream.close(NGHTTP2_CANCEL);
      }
    });
    let gotHeaders = false;
    let done = false;
    stream.on('response', (h, flags) => {
      gotHeaders = true;
      let status = Number(h[':status'] ?? 502);
      const rh: Headers = {};
      for (const k of Object.keys(h)) if (k.charCodeAt(0) !== 58) rh[k] = h[k] as string;
      if (upgrade !== undefined && status === 200) {
        // The extended CONNECT was accepted: to the router it is the 101 of the upgrade it asked for.
        status = 101;
        rh.upgrade = upgrade;
        rh.connection = 'upgrade';
      }
      // END_STREAM on the HEADERS frame: a headers-only (e.g. gRPC trailers-only) response.
      const endStream = (flags & 1) !== 0;
      if (endStream) done = true;
      cb.onHeaders(status, rh, endStream);
    });
    stream.on('data', (c: Buffer) => cb.onData(c, false));
    let trailers: Headers | undefined;
    stream.once('trailers', (t) => {
      trailers = {};
      for (const k of Object.keys(t)) if (k.charCodeAt(0) !== 58) trailers[k] = t[k] as string;
    });
    stream.once('end', () => {
      if (done) return;
      done = true;
      if (trailers) cb.onTrailers(trailers);
      else cb.onData(Buffer.alloc(0), true);
    });
    stream.on('error', () => {});
    stream.once('close', () => {
      if (done) return;
      done = true;
      const code = stream.rstCode;
      if (!connectedSessions.has(session)) cb.onReset('connection_failure', 'connection failure');
      else if (code === NGHTTP2_REFUSED_STREAM) cb.onReset('refused_stream', 'refused stream');
      else if (!gotHeaders && (session.destroyed || session.closed))
        cb.onReset('connection_termination', 'connection closed');
      else cb.onReset('remote_reset', `stream reset (${code})`);
    });
    return wrapper;
  }

  /** GOAWAY on every session: streams in flight finish, nothing new starts. */
  drain(): void {
    for (const e of this.sessions) {
      e.usable = false;
      if (!e.session.closed) e.session.close();
    }
    this.sessions = [];
  }

  destroy(): void {
    for (const e of this.sessions) e.session.destroy();
    this.sessions = [];
    this.pending.failAll('connection_termination', 'pool destroyed');
  }
}
