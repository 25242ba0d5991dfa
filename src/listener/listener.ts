// A bound listener: accepts connections, selects a filter chain, terminates
// TLS when the chain has a TLS transport socket, then hands the connection to
// the chain's network filters.

import net from 'node:net';
import { tlsModule } from '../common/lazy-modules.js';
import { Level, logger } from '../common/logger.js';
import type { FormatContext } from '../common/substitution-formatter.js';
import { timerMs } from '../common/timers.js';
import { ResponseFlag, StreamInfo } from '../http/stream-info.js';
import { formatAddress } from '../network/address.js';
import { nextConnectionId } from '../network/connection-id.js';
import { releaseClosedSocket } from '../network/direct-read.js';
import { type DownstreamConnection, NetworkFilterStatus } from '../network/filter.js';
import type { Counter, Gauge, Histogram, StatsStore } from '../stats/store.js';
import { AcceptGuard } from './accept-guard.js';
import { type ConnectionFacts, selectFilterChain } from './filter-chain-match.js';
import type { FilterChainConfig, ListenerConfig } from './listener-config.js';
import { InspectResult } from './listener-filter.js';

const log = logger('conn_handler');
const connLog = logger('connection');
/** Connections closed because no filter chain matched (flag NR in the listener access log). */
const noChainSockets = new WeakSet<net.Socket>();

export function listenerStatName(host: string, port: number): string {
  // Envoy names listener stats by address, with ':' replaced.
  return `${host.includes(':') ? `[${host}]` : host}_${port}`.replace(/:/g, '_');
}

/** Winds a connection's protocol down (see DownstreamConnection.onDrain). */
type Drain = (closeIdle: boolean) => void;

export class ActiveListener {
  private readonly server: net.Server;
  private readonly connections = new Set<net.Socket>();
  /** How each connection's protocol winds down when the listener drains. */
  private readonly drains = new Map<net.Socket, Drain>();
  /**
   * Connections of a config LDS replaced (or of a listener LDS removed): told to wind down, and
   * closed when their drain time is over if they have not closed by then.
   */
  private readonly retiring = new Map<net.Socket, { drain: Drain }>();
  private readonly retireTimers = new Set<NodeJS.Timeout>();
  /** Bumped by each LDS change: a connection whose chain came from an older config retires. */
  private generation = 0;
  /** LDS removed it: connections still to register retire at once. */
  private removed = false;
  private draining = false;
  /** --drain-time-s: how long a replaced config's connections may keep going. */
  drainTimeMs = 600_000;
  private cxTotal!: Counter;
  private cxActive!: Gauge;
  private workerCxTotal!: Counter;
  private workerCxActive!: Gauge;
  /** Called when a connection this listener took closes (the main process balances on it). */
  onConnectionClosed: (() => void) | undefined;
  private noChain!: Counter;
  private listenerFilterTimeouts!: Counter;
  private cxLength!: Histogram;
  private guard!: AcceptGuard;
  boundPort = 0;

  constructor(
    public config: ListenerConfig,
    private readonly stats: StatsStore,
    /** This process's worker number, for listener.<addr>.worker_<n>.* stats. */
    private readonly workerIndex = 0,
  ) {
    // Paused on accept: nothing is read until a listener filter, codec or proxy asks.
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (s) =>
      this.onAccept(s),
    );
  }

  get name(): string {
    return this.config.name;
  }

  get boundHost(): string {
    return this.config.address.host;
  }

  /**
   * Binds the listener's address, or, in a worker, accepts on a listening socket the main
   * process made (`fd`), or only takes connections handed over (`adoptOnly`, exact balance).
   */
  async listen(from?: { fd?: number; port: number }): Promise<void> {
    const { host, port, ipv4Compat } = this.config.address;
    if (from?.fd === undefined && from) {
      this.boundPort = from.port;
    } else {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        const opts =
          from?.fd !== undefined
            ? { fd: from.fd }
            : { host, port, ipv6Only: net.isIPv6(host) && !ipv4Compat, backlog: 1024 };
        this.server.listen(opts, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
      this.boundPort = from?.port ?? (this.server.address() as net.AddressInfo).port;
    }
    const scope = this.stats.scope(
      `listener.${this.config.statPrefix || listenerStatName(host, this.boundPort)}.`,
    );
    this.cxTotal = scope.counter('downstream_cx_total');
    this.cxActive = scope.gauge('downstream_cx_active');
    this.workerCxTotal = scope.counter(`worker_${this.workerIndex}.downstream_cx_total`);
    this.workerCxActive = scope.gauge(`worker_${this.workerIndex}.downstream_cx_active`);
    this.noChain = scope.counter('no_filter_chain_match');
    this.listenerFilterTimeouts = scope.counter('downstream_pre_cx_timeout');
    this.cxLength = scope.histogram('downstream_cx_length_ms');
    // Made on first use: a listener that never runs out of fds shows no such stat.
    this.guard = new AcceptGuard(this.name, () => scope.counter('downstream_cx_accept_error'));
    if (this.server.listening) this.guard.watch(this.server);
    log.info(`listener '${this.name}' bound to ${host}:${this.boundPort}`);
  }

  /** A connection the main process accepted and handed to this worker (exact balance). */
  adopt(socket: net.Socket): void {
    this.onAccept(socket);
  }

  private onAccept(socket: net.Socket): void {
    socket.on('error', (e) => log.debug(`downstream socket error: ${e.message}`));
    const closed = this.onConnectionClosed;
    if (closed) socket.once('close', closed);
    if (!this.guard.admit(socket)) return;
    const facts: ConnectionFacts = {
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      serverName: '',
      transportProtocol: 'raw_buffer',
      applicationProtocols: [],
    };
    if (this.config.accessLoggers.length) this.logOnClose(socket, facts);
    if (this.config.listenerFilters.length === 0) this.onInspected(socket, facts, undefined);
    else this.runListenerFilters(socket, facts);
  }

  /** Reads the first bytes for the inspecting listener filters, then puts them back. */
  private runListenerFilters(socket: net.Socket, facts: ConnectionFacts): void {
    const timeoutMs = this.config.listenerFiltersTimeoutMs;
    socket.resume();
    const filters = this.config.listenerFilters.map((f) => f.createFilter());
    let pending = filters;
    let seen: Buffer = Buffer.alloc(0);
    const max = Math.max(...filters.map((f) => f.maxBytes));
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      this.onInspected(socket, facts, seen);
    };
    const offer = () => {
      pending = pending.filter((f) => f.inspect(seen, facts) === InspectResult.NeedMoreData);
      if (pending.length === 0 || seen.length >= max) finish();
    };
    const onData = (c: Buffer) => {
      seen = seen.length ? Buffer.concat([seen, c]) : c;
      offer();
    };
    // A client that closes before saying enough is closed, as Envoy does.
    const onEnd = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        this.listenerFilterTimeouts.inc();
        if (this.config.continueOnListenerFiltersTimeout) finish();
        else socket.destroy();
      }, timerMs(timeoutMs));
    }
  }

  private onInspected(socket: net.Socket, facts: ConnectionFacts, seen: Buffer | undefined): void {
    const generation = this.generation;
    const chain = selectFilterChain(this.config.filterChains, facts) ?? this.config.defaultFilterChain;
    if (!chain) {
      this.noChain.inc();
      noChainSockets.add(socket);
      log.debug(`listener '${this.name}': no filter chain matched a connection from ${facts.remoteAddress}`);
      socket.destroy();
      return;
    }
    // Envoy counts a connection once it has a filter chain.
    this.cxTotal.inc();
    this.cxActive.inc();
    this.workerCxTotal.inc();
    this.workerCxActive.inc();
    this.connections.add(socket);
    const openedAt = Date.now();
    socket.once('close', () => {
      this.cxActive.dec();
      this.workerCxActive.dec();
      this.cxLength.recordValue(Date.now() - openedAt);
      this.connections.delete(socket);
      this.drains.delete(socket);
      this.retiring.delete(socket);
      releaseClosedSocket(socket);
    });
    if (chain.transport) {
      const t = chain.transport;
      if (!t.secureContext) {
        // Its SDS certificate has not arrived yet: nothing to present.
        log.debug(`listener '${this.name}': TLS secret not ready; closing a connection`);
        socket.destroy();
        return;
      }
      // Bytes read by listener filters go back into the socket: Node's TLS takes what the socket
      // has buffered first (its initRead), then reads the native handle itself.
      if (seen?.length) socket.unshift(seen);
      const secure = new (tlsModule().TLSSocket)(socket, {
        isServer: true,
        secureContext: t.secureContext,
        ALPNProtocols: t.alpn.length ? t.alpn : undefined,
        requestCert: t.requestCert || t.requireClientCert,
        rejectUnauthorized: t.requireClientCert,
      });
      secure.on('error', (e) => {
        log.debug(`TLS error from ${facts.remoteAddress}: ${e.message}`);
        socket.destroy();
      });
      // A client that leaves before the handshake completes: Node's TLS socket ends without
      // closing, and the connection would stay in CLOSE-WAIT.
      const leftEarly = () => socket.destroy();
      secure.once('end', leftEarly);
      secure.once('secure', () => {
        secure.off('end', leftEarly);
        const sni = (secure as unknown as { servername?: string | false }).servername;
        this.runFilters(
          socket,
          chain,
          generation,
          secure,
          facts,
          true,
          typeof sni === 'string' ? sni : '',
          secure.alpnProtocol || '',
        );
      });
      return;
    }
    if (seen?.length) socket.unshift(seen);
    this.runFilters(
      socket,
      chain,
      generation,
      socket,
      facts,
      false,
      facts.serverName,
      facts.applicationProtocols[0] ?? '',
    );
  }

  private runFilters(
    raw: net.Socket,
    chain: FilterChainConfig,
    generation: number,
    socket: net.Socket,
    f: ConnectionFacts,
    isTls: boolean,
    serverName: string,
    alpn: string,
  ): void {
    const conn: DownstreamConnection = {
      id: nextConnectionId(),
      socket,
      remoteAddress: f.remoteAddress,
      remotePort: f.remotePort,
      localAddress: f.localAddress,
      localPort: f.localPort,
      tls: isTls,
      serverName,
      alpn,
      bufferLimit: this.config.bufferLimitBytes,
      onDrain: (drain) => {
        // Its chain came from a config LDS has replaced (or removed) since: a TLS handshake or
        // listener filter was under way.
        if (this.removed || generation !== this.generation) this.retire([[raw, drain]]);
        // Accepted while draining: served, then closed (connection: close / GOAWAY).
        else if (this.draining) drain(false);
        else this.drains.set(raw, drain);
      },
    };
    if (connLog.on(Level.debug)) this.traceConnection(conn);
    for (const factory of chain.filterFactories) {
      if (factory.createFilter().onNewConnection(conn) === NetworkFilterStatus.StopIteration) return;
    }
  }

  /** The listener's access log: one entry per connection, written when it closes. */
  private logOnClose(socket: net.Socket, facts: ConnectionFacts): void {
    const info = new StreamInfo();
    socket.once('close', () => {
      info.lastResponseByteMs = info.elapsedMs();
      info.bytesReceived = socket.bytesRead;
      info.bytesSent = socket.bytesWritten;
      if (noChainSockets.has(socket)) info.setFlag(ResponseFlag.NR);
      const c: FormatContext = {
        info,
        protocol: '-',
        remoteAddress: facts.remoteAddress,
        remotePort: facts.remotePort,
        directRemoteAddress: facts.remoteAddress,
        directRemotePort: facts.remotePort,
        localAddress: facts.localAddress,
        localPort: facts.localPort,
      };
      for (const l of this.config.accessLoggers) l.log(c);
    });
  }

  /** Envoy's `[C<id>]` connection lifecycle lines (component `connection`). */
  private traceConnection(conn: DownstreamConnection): void {
    const p = `[C${conn.id}]`;
    connLog.debug(`${p} new connection from ${formatAddress(conn.remoteAddress, conn.remotePort)}`);
    const s = conn.socket;
    s.once('end', () => connLog.debug(`${p} remote close`));
    s.once('close', (hadError: boolean) => connLog.debug(`${p} closing socket: ${hadError ? 1 : 0}`));
  }

  /** Envoy's runtime key envoy.resource_limits.listener.<name>.connection_limit. */
  setConnectionLimit(n: number): void {
    this.server.maxConnections = n;
    const overflow = this.stats.counter(
      `listener.${this.config.statPrefix || listenerStatName(this.boundHost, this.boundPort)}.downstream_cx_overflow`,
    );
    this.server.on('drop', () => overflow.inc());
  }

  /**
   * Stops accepting and asks open connections to wind down (HTTP/1: `connection: close` on the
   * response in flight and idle ones closed; HTTP/2: GOAWAY). Resolves when they are all gone.
   */
  drain(): Promise<void> {
    const closed = this.close(false);
    this.encourageDrain();
    return closed;
  }

  /**
   * LDS changed this listener but not its address: new connections take the new filter chains;
   * those already open drain as Envoy drains a replaced listener's (see retire).
   */
  updateConfig(config: ListenerConfig): void {
    this.config = config;
    this.generation++;
    const open = [...this.drains];
    this.drains.clear();
    this.retire(open);
  }

  /**
   * LDS removed this listener (or moved it to another address): it stops accepting and its
   * connections drain as in updateConfig. Resolves when they are all gone.
   */
  remove(): Promise<void> {
    const closed = this.close(false);
    this.removed = true;
    const open = [...this.drains];
    this.drains.clear();
    this.retire(open);
    return closed;
  }

  /**
   * Envoy's drain of a replaced listener: each connection is told to wind down without being cut
   * off (HTTP/1: the response in flight, or the next one, carries `connection: close`; HTTP/2:
   * GOAWAY). An idle HTTP/1 keep-alive connection is not closed now: its client may be sending a
   * request on it at this very moment, and closing under it loses that request. Whatever is still
   * open when the drain time is over is closed (idle HTTP/1 at once, busy after its response).
   */
  private retire(conns: Array<[net.Socket, Drain]>): void {
    if (conns.length === 0) return;
    const batch = conns.map(([socket, drain]) => {
      const r = { drain };
      this.retiring.set(socket, r);
      drain(false);
      return [socket, r] as const;
    });
    const t = setTimeout(() => {
      this.retireTimers.delete(t);
      // Those of this batch still open (and not already told to close by encourageDrain).
      for (const [socket, r] of batch) {
        if (this.retiring.get(socket) !== r) continue;
        this.retiring.delete(socket);
        r.drain(true);
      }
    }, timerMs(this.drainTimeMs));
    t.unref();
    this.retireTimers.add(t);
  }

  /** Asks open connections (and those still to come) to wind down, while still accepting. */
  encourageDrain(): void {
    this.draining = true;
    for (const d of this.drains.values()) d(true);
    this.drains.clear();
    for (const r of this.retiring.values()) r.drain(true);
    this.retiring.clear();
  }

  /** Stopped by /drain_listeners: no longer accepting, open connections left to finish. */
  stopped = false;

  /** Stops accepting; connections already open carry on. */
  stopListening(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.server.listening) this.server.close();
  }

  /** Stops accepting; with `force`, closes open connections too. */
  async close(force = false): Promise<void> {
    if (force) {
      for (const t of this.retireTimers) clearTimeout(t);
      this.retireTimers.clear();
    }
    const closed = this.server.listening
      ? new Promise<void>((resolve) => this.server.close(() => resolve()))
      : Promise.resolve();
    if (force) for (const s of this.connections) s.destroy();
    await closed;
  }
}
