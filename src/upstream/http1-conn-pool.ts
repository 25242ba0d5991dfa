// Upstream HTTP/1.1 connection pool for one host, on Herald's own codec.
// One request per connection at a time; idle connections are reused most
// recently used first (as Envoy's pool does); a connection whose FIN has been
// read is never reused; max_requests_per_connection and the idle timeout
// retire connections. Requests that find no idle connection wait in a
// pending queue (bounded by the circuit breakers) until a connection is
// ready, as in Envoy's pool: a request is only written to a connected socket.

import type net from 'node:net';
import { logger } from '../common/logger.js';
import type { Headers } from '../common/substitution-formatter.js';
import { StreamTimer, timerMs } from '../common/timers.js';
import { Http1Parser, type MessageHead, ParseError } from '../http/http1/parser.js';
import {
  appendHeaderLines,
  inUpstreamRead,
  LAST_CHUNK,
  serializeHead,
  writeChunk,
} from '../http/http1/serializer.js';
import { nextConnectionId } from '../network/connection-id.js';
import { readDirect, releaseClosedSocket } from '../network/direct-read.js';
import type { ClusterStats } from './cluster.js';
import { DeferredRequest } from './deferred-request.js';
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

const log = logger('pool');

export interface Http1PoolOptions {
  /** per_connection_buffer_limit_bytes: unsent request bytes before the sender waits. */
  bufferLimit: number;
  idleTimeoutMs: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Circuit breakers of the cluster at this pool's priority. */
  resources: ResourceManager;
  /** per_host_thresholds.max_connections. */
  perHostMaxConnections: number | undefined;
}

/** Envoy's defaults for upstream responses: 60 KiB of headers (max_response_headers_kb), 100 headers. */
const RESPONSE_LIMITS = { maxHeaderBytes: 60 * 1024, maxHeaderCount: 100 };

class Http1UpstreamStream implements UpstreamRequest {
  requestDone = false;
  responseDone = false;
  responseStarted = false;
  chunked = false;
  aborted = false;
  /** After a 101: raw bytes both ways, FIN carried as end of stream. */
  tunnel = false;
  /** The request asked to upgrade; only then may a 101 open a tunnel. */
  upgradeRequested = false;
  /** A CONNECT: a 2xx opens the tunnel. */
  connectRequested = false;
  /** Request bytes reached a connected socket (reset-before-request retries only before this). */
  started = false;
  private settled = false;

  constructor(
    readonly conn: Http1ClientConnection,
    readonly cb: UpstreamCallbacks,
  ) {}

  sendData(chunk: Buffer, endStream: boolean): boolean {
    if (this.aborted || this.requestDone) return true;
    const s = this.conn.socket;
    let ok = true;
    if (this.chunked) {
      if (chunk.length) ok = writeChunk(s, chunk);
      if (endStream) ok = s.write(LAST_CHUNK);
    } else if (chunk.length) ok = s.write(chunk);
    if (!ok && s.writableLength < this.conn.pool.options.bufferLimit) ok = true;
    if (endStream && this.tunnel) {
      s.end(); // half-close the tunnel
      return ok;
    }
    if (endStream) this.markRequestDone();
    return ok;
  }

  sendTrailers(trailers: Headers): void {
    if (this.aborted || this.requestDone) return;
    if (this.chunked) this.conn.socket.write(serializeHead('0\r\n', trailers), 'latin1');
    this.markRequestDone();
  }

  private markRequestDone(): void {
    this.requestDone = true;
    if (this.responseDone) this.conn.release(this);
  }

  onDrain(cb: () => void): void {
    if (!this.conn.socket.writableNeedDrain) queueMicrotask(cb);
    else this.conn.socket.once('drain', cb);
  }

  connectionInfo(): UpstreamConnectionInfo {
    const s = this.conn.socket;
    return { localAddress: s.localAddress ?? '', localPort: s.localPort ?? 0, connectionId: this.conn.id };
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.settle();
    if (!this.responseDone) this.conn.pool.stats.upstream_cx_destroy_local_with_active_rq.inc();
    this.conn.destroy();
  }

  /** The exchange is over, whichever way: give back the max_requests slot (once). */
  settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.conn.pool.options.resources.requests.dec();
  }

  pauseResponse(): void {
    this.conn.socket.pause();
  }

  resumeResponse(): void {
    this.conn.socket.resume();
  }
}

export class Http1ClientConnection {
  readonly socket: net.Socket;
  readonly id = nextConnectionId();
  private readonly parser: Http1Parser;
  private stream: Http1UpstreamStream | undefined;
  private head: MessageHead | undefined;
  connected = false;
  /** The peer's FIN was read: never reuse. */
  remoteClosed = false;
  closed = false;
  requests = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly idleTimer = new StreamTimer(() => this.onIdleTimeout());
  private readonly openedAt = Date.now();

  constructor(
    readonly pool: Http1ConnPool,
    host: Host,
    connectTimeoutMs: number,
    /** A connection already made (by auto_config's protocol probe). */
    adopted?: net.Socket,
  ) {
    this.parser = new Http1Parser('response', RESPONSE_LIMITS, {
      onHead: (h) => this.onHead(h),
      onBody: (c) => this.onBody(c),
      onComplete: (t) => this.onComplete(t),
    });
    if (adopted) {
      this.socket = adopted;
      this.connected = true;
    } else {
      const { socket, readyEvent } = connectToHost(host, pool.tls);
      this.socket = socket;
      this.connectTimer = setTimeout(() => this.onConnectTimeout(), timerMs(connectTimeoutMs));
      socket.once(readyEvent, () => {
        clearTimeout(this.connectTimer);
        this.connected = true;
        pool.stats.upstream_cx_connect_ms.recordValue(Date.now() - this.openedAt);
        host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_SUCCESS');
        pool.onConnected(this);
      });
    }
    const s = this.socket;
    if (readDirect(s, (c) => inUpstreamRead(this.onData, this, c))) this.parser.transientInput = true;
    else s.on('data', (c: Buffer) => inUpstreamRead(this.onData, this, c));
    s.once('end', () => this.onRemoteEnd());
    s.once('close', () => {
      this.onSocketClose();
      releaseClosedSocket(s);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      this.lastError = e.code ?? e.message;
    });
  }

  private lastError = '';
  private connectTimedOut = false;

  get busy(): boolean {
    return this.stream !== undefined;
  }

  /** Writes a request on this (connected, idle) connection. */
  start(headers: Headers, opts: NewStreamOptions, cb: UpstreamCallbacks): Http1UpstreamStream {
    this.pool.options.resources.requests.inc();
    const stream = new Http1UpstreamStream(this, cb);
    stream.started = true;
    stream.upgradeRequested = opts.upgrade === true;
    stream.connectRequested = stream.upgradeRequested && headers[':method'] === 'CONNECT';
    this.stream = stream;
    this.requests++;
    this.head = undefined;
    this.parser.reset();
    this.parser.noBody = headers[':method'] === 'HEAD';
    this.idleTimer.disarm();
    // Host first, as clients write it; the framing and connection headers Herald decides last.
    const authority = headers[':authority'] ?? headers.host;
    // CONNECT's target is its authority (authority-form).
    const target = stream.connectRequested ? headers[':authority'] : headers[':path'];
    let head = `${headers[':method']} ${target} HTTP/1.1\r\n`;
    if (authority !== undefined) head += `host: ${authority}\r\n`;
    head = appendHeaderLines(head, headers, 'host');
    if (!opts.endStream && headers['content-length'] === undefined && !opts.upgrade) {
      head += 'transfer-encoding: chunked\r\n';
      stream.chunked = true;
    }
    const max = this.pool.options.maxRequestsPerConnection;
    if (max > 0 && this.requests >= max) head += 'connection: close\r\n';
    this.socket.write(`${head}\r\n`, 'latin1');
    if (opts.endStream) stream.requestDone = true;
    return stream;
  }

  private onData(chunk: Buffer): void {
    const stream = this.stream;
    if (stream?.tunnel) {
      if (!stream.aborted) stream.cb.onData(this.parser.keep(chunk), false);
      return;
    }
    if (!stream) {
      // Bytes on an idle connection: nothing can be waiting for them. Close it.
      log.debug('unsolicited bytes on an idle upstream connection; closing it');
      this.destroy();
      return;
    }
    let rest: Buffer | undefined = chunk;
    try {
      while (rest?.length) {
        rest = this.parser.execute(rest);
        if (!this.parser.messageComplete) break;
        const h = this.head;
        if (h && h.status >= 100 && h.status < 200 && h.status !== 101) {
          // Informational (100 Continue): Herald already answered the client; keep reading.
          const noBody = this.parser.noBody;
          this.parser.reset();
          this.parser.noBody = noBody;
          this.head = undefined;
          continue;
        }
        if (stream.tunnel) {
          // Switched protocols (or CONNECT established): whatever follows belongs to the tunnel.
          if (rest?.length && !stream.aborted) stream.cb.onData(this.parser.keep(rest), false);
          break;
        }
        this.finishResponse((rest?.length ?? 0) > 0);
        break;
      }
    } catch (e) {
      if (!(e instanceof ParseError))
        log.error(`upstream HTTP/1 connection failed: ${(e as Error).stack ?? e}`);
      // Malformed input (or a bug) costs this request and connection, never the process.
      this.failStream('protocol_error', (e as Error).message);
      this.destroy();
      return;
    }
  }

  private onHead(h: MessageHead): void {
    if (h.status >= 100 && h.status < 200 && h.status !== 101) {
      this.head = h;
      return;
    }
    this.head = h;
    const stream = this.stream;
    if (!stream || stream.aborted) return;
    if (stream.connectRequested && h.status >= 200 && h.status < 300) {
      // A 2xx to CONNECT has no body (RFC 9110 9.3.6): the tunnel starts right after the head.
      this.parser.noBody = true;
      stream.tunnel = true;
      stream.responseStarted = true;
      this.remoteClosed = true;
      stream.cb.onHeaders(h.status, h.headers, false);
      return;
    }
    if (h.status === 101) {
      if (!stream.upgradeRequested)
        throw new ParseError(502, 'http1.codec_error', 'unexpected 101 Switching Protocols');
      // Never pooled again; the socket now belongs to the tunnel.
      stream.tunnel = true;
      stream.responseStarted = true;
      this.remoteClosed = true;
      stream.cb.onHeaders(101, h.headers, false);
      return;
    }
    stream.responseStarted = true;
    if (h.close) this.remoteClosed = true;
    // The parser completes body-less responses right after this callback.
    const bodyless =
      this.parser.noBody || h.status === 204 || h.status === 304 || (h.contentLength === 0 && !h.chunked);
    stream.cb.onHeaders(h.status, h.headers, bodyless);
  }

  private onBody(chunk: Buffer): void {
    const stream = this.stream;
    if (stream && !stream.aborted && chunk.length) stream.cb.onData(chunk, false);
  }

  /** Set by the parser when a final response is complete; acted on once the read is parsed. */
  private completed: { trailers: Headers | undefined } | undefined;

  private onComplete(trailers: Headers | undefined): void {
    const h = this.head;
    if (h && h.status >= 100 && h.status < 200) return; // informational, or a 101 tunnel
    if (this.stream?.tunnel) return; // a CONNECT tunnel: its bytes are not a body
    this.completed = { trailers };
  }

  /**
   * The response is complete. Back to the pool before the end is delivered, so whatever the end
   * triggers (a pipelined request) finds the connection idle; closed instead when bytes followed
   * the response (the connection is out of sync) or the request body was not all sent (an early
   * reply leaves the connection unusable).
   */
  private finishResponse(trailingBytes: boolean): void {
    const done = this.completed;
    this.completed = undefined;
    const stream = this.stream;
    if (!done || !stream || stream.aborted) return;
    stream.responseDone = true;
    stream.settle();
    const h = this.head;
    const bodyless =
      this.parser.noBody || h?.status === 204 || h?.status === 304 || (h?.contentLength === 0 && !h?.chunked);
    if (trailingBytes) {
      this.remoteClosed = true;
      this.stream = undefined;
      this.destroy();
    } else if (stream.requestDone) this.release(stream);
    else this.destroy();
    if (done.trailers) stream.cb.onTrailers(done.trailers);
    else if (!bodyless) stream.cb.onData(EMPTY, true);
  }

  /** The exchange is over: back to the pool or closed. */
  release(stream: Http1UpstreamStream): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    const max = this.pool.options.maxRequestsPerConnection;
    if (this.remoteClosed || this.closed || this.pool.draining || (max > 0 && this.requests >= max)) {
      this.destroy();
      return;
    }
    // Response backpressure may have paused the socket; a pooled connection must read (to see a FIN).
    this.socket.resume();
    this.pool.onIdle(this);
  }

  private onRemoteEnd(): void {
    this.remoteClosed = true;
    const stream = this.stream;
    if (stream?.tunnel) {
      // The upstream half-closed the tunnel: pass the FIN on.
      if (!stream.aborted && !stream.responseDone) {
        stream.responseDone = true;
        stream.cb.onData(EMPTY, true);
      }
      return;
    }
    if (!stream) {
      // FIN on an idle connection: take it out of the pool at once.
      this.destroy();
      return;
    }
    const outcome = this.parser.finish();
    if (outcome === 'complete') this.finishResponse(false);
    else this.failStream('connection_termination', 'remote closed the connection');
    this.destroy();
  }

  private onSocketClose(): void {
    clearTimeout(this.connectTimer);
    this.idleTimer.disarm();
    const wasConnected = this.connected;
    if (wasConnected) this.pool.stats.upstream_cx_length_ms.recordValue(Date.now() - this.openedAt);
    this.closed = true;
    const stream = this.stream;
    this.stream = undefined;
    if (stream?.tunnel) {
      stream.settle();
      if (!stream.responseDone && !stream.aborted) stream.cb.onData(EMPTY, true);
    } else if (stream && !stream.responseDone && !stream.aborted) {
      this.stream = stream;
      this.failStream('connection_termination', this.lastError || 'connection closed');
      this.stream = undefined;
    }
    stream?.settle();
    this.pool.onClose(
      this,
      wasConnected,
      this.connectTimedOut ? 'connect timeout' : this.lastError || 'connection failure',
    );
  }

  private onConnectTimeout(): void {
    this.connectTimedOut = true;
    this.pool.stats.upstream_cx_connect_timeout.inc();
    this.socket.destroy();
  }

  get timedOutConnecting(): boolean {
    return this.connectTimedOut;
  }

  private failStream(reason: Parameters<UpstreamCallbacks['onReset']>[0], detail: string): void {
    const stream = this.stream;
    if (!stream || stream.aborted || stream.responseDone) return;
    stream.responseDone = true;
    stream.settle();
    if (reason === 'connection_termination') this.pool.stats.upstream_cx_destroy_remote_with_active_rq.inc();
    stream.cb.onReset(reason, detail);
  }

  destroy(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** Idle timeout while pooled. */
  armIdleTimeout(ms: number): void {
    this.idleTimer.arm(ms);
  }

  private onIdleTimeout(): void {
    if (this.stream) return;
    this.pool.stats.upstream_cx_idle_timeout.inc();
    this.destroy();
  }
}

const EMPTY = Buffer.alloc(0);

export class Http1ConnPool {
  /** Idle connections, most recently used last. */
  private readonly idle: Http1ClientConnection[] = [];
  private readonly all = new Set<Http1ClientConnection>();
  /** Requests waiting for a connection, oldest first. */
  private readonly pending: PendingQueue;
  private connecting = 0;

  constructor(
    readonly host: Host,
    readonly stats: ClusterStats,
    readonly options: Http1PoolOptions,
    readonly tls: UpstreamTlsConfig | undefined,
  ) {
    this.pending = new PendingQueue(stats, () => options.resources);
  }

  newStream(
    headers: Headers,
    opts: NewStreamOptions,
    cb: UpstreamCallbacks,
    adopted?: net.Socket,
  ): UpstreamRequest {
    const resources = this.options.resources;
    let conn: Http1ClientConnection | undefined;
    while ((conn = this.idle.pop())) {
      if (!conn.closed && !conn.remoteClosed && !conn.socket.destroyed) break;
      conn.destroy(); // never reused, so never left open
    }
    if (conn) {
      if (!resources.requests.canCreate()) {
        this.idle.push(conn);
        return this.pending.overflow(cb);
      }
      return conn.start(headers, opts, cb);
    }
    if (adopted) {
      // auto_config's probe connection, already connected: it carries this request.
      conn = this.newConnection(opts.connectTimeoutMs, adopted);
      if (!resources.requests.canCreate()) {
        this.onIdle(conn);
        return this.pending.overflow(cb);
      }
      return conn.start(headers, opts, cb);
    }
    const req = this.pending.add(headers, opts, cb);
    if (req instanceof DeferredRequest) this.tryCreateConnections(opts.connectTimeoutMs);
    return req;
  }

  /**
   * Opens connections while more requests wait than connections are being made, as the
   * circuit breakers allow; a pool with no connection at all may always open one (Envoy's
   * rule, so a pool never stalls).
   */
  private tryCreateConnections(connectTimeoutMs: number): void {
    const resources = this.options.resources;
    const perHost = this.options.perHostMaxConnections;
    while (this.connecting < this.pending.length) {
      const allowed =
        resources.connections.canCreate() && (perHost === undefined || this.host.activeConnections < perHost);
      if (!allowed) {
        this.stats.upstream_cx_overflow.inc();
        if (this.all.size > 0) return;
      }
      this.newConnection(connectTimeoutMs);
      if (!allowed) return;
    }
  }

  private newConnection(connectTimeoutMs: number, adopted?: net.Socket): Http1ClientConnection {
    const conn = new Http1ClientConnection(this, this.host, connectTimeoutMs, adopted);
    if (!adopted) this.connecting++;
    this.all.add(conn);
    this.host.activeConnections++;
    this.options.resources.connections.inc();
    this.stats.upstream_cx_total.inc();
    this.stats.upstream_cx_active.inc();
    this.stats.upstream_cx_http1_total.inc();
    return conn;
  }

  /** A new connection is up: it takes the oldest waiting request, or joins the idle list. */
  onConnected(conn: Http1ClientConnection): void {
    this.connecting--;
    this.onIdle(conn);
  }

  /** A connection is free: the oldest waiting request takes it, else it waits idle. */
  onIdle(conn: Http1ClientConnection): void {
    const resources = this.options.resources;
    let req: DeferredRequest | undefined;
    while ((req = this.pending.take())) {
      if (!resources.requests.canCreate()) {
        this.stats.upstream_rq_pending_overflow.inc();
        req.cb.onReset('overflow', 'overflow');
        continue;
      }
      req.attach(conn.start(req.headers, req.opts, req.cb));
      return;
    }
    this.idle.push(conn);
    conn.armIdleTimeout(this.options.idleTimeoutMs);
  }

  onClose(conn: Http1ClientConnection, wasConnected: boolean, failure: string): void {
    if (!this.all.delete(conn)) return;
    this.host.activeConnections--;
    this.options.resources.connections.dec();
    this.stats.upstream_cx_active.dec();
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    if (!wasConnected) {
      this.connecting--;
      this.stats.upstream_cx_connect_fail.inc();
      this.host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_FAILED');
      // Envoy fails every waiting request on a connect failure; the router decides whether to retry.
      this.pending.failAll('connection_failure', failure);
      return;
    }
    // Capacity freed: waiting requests may now get a connection.
    const next = this.pending.peek();
    if (next) this.tryCreateConnections(next.opts.connectTimeoutMs);
  }

  get activeConnections(): number {
    return this.all.size;
  }

  draining = false;

  drain(): void {
    this.draining = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }

  destroy(): void {
    for (const c of this.all) c.destroy();
    this.pending.failAll('connection_termination', 'pool destroyed');
  }
}
