// A terminated CONNECT (route upgrade_configs with connect_config): the
// request's payload goes to the host as raw TCP, as Envoy's TcpUpstream does.
// The request headers are not sent; once the connection is up, a 200 is
// synthesized for the client, then the host's bytes are the response body and
// a FIN either way is the end of that direction's stream.
import type net from 'node:net';
import { logger } from '../common/logger.js';
import { timerMs } from '../common/timers.js';
import { nextConnectionId } from '../network/connection-id.js';
import { releaseClosedSocket } from '../network/direct-read.js';
import type { Cluster } from './cluster.js';
import type { Host } from './host.js';
import type { ResourcePriority } from './resource-manager.js';
import { connectToHost } from './transport-socket.js';
import type { UpstreamCallbacks, UpstreamConnectionInfo, UpstreamRequest } from './upstream-request.js';

const log = logger('pool');
const EMPTY = Buffer.alloc(0);

class TcpUpstreamRequest implements UpstreamRequest {
  started = false;
  private connected = false;
  private aborted = false;
  /** The stream is over for the router (ended, failed or aborted): no more callbacks. */
  private settled = false;
  private readonly id = nextConnectionId();

  constructor(
    private readonly socket: net.Socket,
    private readonly cb: UpstreamCallbacks,
    private readonly bufferLimit: number,
  ) {}

  connectionInfo(): UpstreamConnectionInfo | undefined {
    if (!this.connected) return undefined;
    const s = this.socket;
    return { localAddress: s.localAddress ?? '', localPort: s.localPort ?? 0, connectionId: this.id };
  }

  /** Called once the connection is up: the 200 that completes the CONNECT handshake. */
  onConnected(): void {
    this.connected = true;
    this.started = true;
    const s = this.socket;
    s.on('data', (chunk: Buffer) => {
      if (!this.settled) this.cb.onData(chunk, false);
    });
    // The host half-closed: the response ends; the client may still send.
    s.once('end', () => this.finish());
    this.cb.onHeaders(200, {}, false);
  }

  /** The socket closed: before connecting it is a connect failure, later a termination unless it ended cleanly. */
  onClose(detail: string): void {
    if (this.settled || this.aborted) return;
    this.settled = true;
    this.cb.onReset(this.connected ? 'connection_termination' : 'connection_failure', detail);
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.cb.onData(EMPTY, true);
  }

  sendData(chunk: Buffer, endStream: boolean): boolean {
    const s = this.socket;
    if (this.aborted || s.destroyed || s.writableEnded) return true;
    // Written while connecting too: Node holds it until the connection is up.
    let ok = chunk.length ? s.write(chunk) : true;
    if (!ok && s.writableLength < this.bufferLimit) ok = true;
    if (endStream) s.end();
    return ok;
  }

  sendTrailers(): void {
    // Trailers have no TCP form: they end the payload (Envoy's TcpUpstream::encodeTrailers).
    this.sendData(EMPTY, true);
  }

  onDrain(cb: () => void): void {
    if (!this.socket.writableNeedDrain) queueMicrotask(cb);
    else this.socket.once('drain', cb);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.settled = true;
    this.socket.destroy();
  }

  pauseResponse(): void {
    this.socket.pause();
  }

  resumeResponse(): void {
    this.socket.resume();
  }
}

/**
 * Opens a raw TCP (or TLS, per the cluster's transport socket) connection to `host` for one
 * terminated CONNECT. Connections count in the cluster's upstream_cx_* stats and its
 * max_connections circuit breaker; one over the limit fails at once as an overflow.
 */
export function openTcpTunnel(
  cluster: Cluster,
  host: Host,
  priority: ResourcePriority,
  cb: UpstreamCallbacks,
): UpstreamRequest {
  const cfg = cluster.config;
  const stats = cluster.stats;
  const resources = cluster.resources[priority];
  const perHost = cfg.circuitBreakers.perHostMaxConnections[priority];
  if (!resources.connections.canCreate() || (perHost !== undefined && host.activeConnections >= perHost)) {
    stats.upstream_cx_overflow.inc();
    let cancelled = false;
    queueMicrotask(() => {
      if (!cancelled) cb.onReset('overflow', 'overflow');
    });
    return {
      started: false,
      sendData: () => true,
      sendTrailers: () => {},
      onDrain: () => {},
      abort: () => {
        cancelled = true;
      },
      pauseResponse: () => {},
      resumeResponse: () => {},
    };
  }
  resources.connections.inc();
  host.activeConnections++;
  stats.upstream_cx_total.inc();
  stats.upstream_cx_active.inc();
  const openedAt = Date.now();
  // Not half-open: once the host has ended the response the router forwards nothing more, so
  // its FIN closes the connection (the client's FIN, sent with end(), still lets the host answer).
  const { socket, readyEvent } = connectToHost(host, cfg.tls);
  const req = new TcpUpstreamRequest(socket, cb, cfg.bufferLimitBytes);
  let connected = false;
  let timedOut = false;
  let lastError = '';
  const timer = setTimeout(() => {
    timedOut = true;
    stats.upstream_cx_connect_timeout.inc();
    socket.destroy();
  }, timerMs(cfg.connectTimeoutMs));
  socket.once(readyEvent, () => {
    clearTimeout(timer);
    connected = true;
    stats.upstream_cx_connect_ms.recordValue(Date.now() - openedAt);
    host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_SUCCESS');
    req.onConnected();
  });
  socket.on('error', (e: NodeJS.ErrnoException) => {
    lastError = e.code ?? e.message;
    log.debug(`tunnel to ${host.addressString}: ${e.message}`);
  });
  socket.once('close', () => {
    clearTimeout(timer);
    resources.connections.dec();
    host.activeConnections--;
    stats.upstream_cx_active.dec();
    if (connected) stats.upstream_cx_length_ms.recordValue(Date.now() - openedAt);
    else {
      stats.upstream_cx_connect_fail.inc();
      host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_FAILED');
    }
    req.onClose(timedOut ? 'connect timeout' : lastError || 'connection closed');
    releaseClosedSocket(socket);
  });
  return req;
}

/** openTcpTunnel in the shape of a host's pool, for the router's one code path to upstreams. */
export function tcpTunnelPool(
  cluster: Cluster,
  host: Host,
  priority: ResourcePriority,
): { newStream(headers: unknown, opts: unknown, cb: UpstreamCallbacks): UpstreamRequest } {
  return { newStream: (_headers, _opts, cb) => openTcpTunnel(cluster, host, priority, cb) };
}
