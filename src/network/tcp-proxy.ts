// envoy.filters.network.tcp_proxy: connects each downstream connection to a
// host of the cluster and copies bytes both ways, carrying half-close.

import type net from 'node:net';
import { type AccessLogger, compileAccessLog } from '../accesslog/access-log.js';
import { logger } from '../common/logger.js';
import type { FormatContext } from '../common/substitution-formatter.js';
import { timerMs } from '../common/timers.js';
import type { Reader } from '../config/reader.js';
import type { ExtensionFactory, FactoryContext } from '../extensions/registry.js';
import { ResponseFlag, StreamInfo } from '../http/stream-info.js';
import type { ServerContext } from '../server/server-context.js';
import type { Counter } from '../stats/store.js';
import { connectToHost } from '../upstream/transport-socket.js';
import { nextConnectionId } from './connection-id.js';
import { own, readDirect } from './direct-read.js';
import type { DownstreamConnection, NetworkFilter, NetworkFilterFactory } from './filter.js';
import { connectionAddresses, NetworkFilterStatus } from './filter.js';

const log = logger('filter');

export const TCP_PROXY_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

interface TcpProxyConfig {
  statPrefix: string;
  accessLoggers: AccessLogger[];
  cluster?: string;
  weighted?: { name: string; weight: number }[];
  totalWeight: number;
  idleTimeoutMs: number;
  maxConnectAttempts: number;
}

class TcpProxyStats {
  readonly downstream_cx_total: Counter;
  readonly downstream_cx_rx_bytes_total: Counter;
  readonly downstream_cx_tx_bytes_total: Counter;
  readonly idle_timeout: Counter;
  readonly downstream_cx_no_route: Counter;
  constructor(server: ServerContext, prefix: string) {
    const s = server.stats.scope(`tcp.${prefix}.`);
    this.downstream_cx_total = s.counter('downstream_cx_total');
    this.downstream_cx_rx_bytes_total = s.counter('downstream_cx_rx_bytes_total');
    this.downstream_cx_tx_bytes_total = s.counter('downstream_cx_tx_bytes_total');
    this.idle_timeout = s.counter('idle_timeout');
    this.downstream_cx_no_route = s.counter('downstream_cx_no_route');
  }
}

function compileTcpProxy(r: Reader, ctx: FactoryContext): TcpProxyConfig {
  const cfg: TcpProxyConfig = {
    statPrefix: r.str('stat_prefix', ''),
    accessLoggers: r
      .list('access_log')
      .map((a) => compileAccessLog(a, (x) => ctx.compileExtension<AccessLogger>('access_logger', x))),
    totalWeight: 0,
    // Envoy's default idle timeout for tcp_proxy is 1 hour; 0 disables it.
    idleTimeoutMs: r.durationMs('idle_timeout', 3600_000),
    maxConnectAttempts: r.num('max_connect_attempts', 1),
  };
  const kind = r.oneof('cluster', 'weighted_clusters', 'on_demand');
  const known = ctx.server.knownClusters;
  if (kind === 'cluster') {
    cfg.cluster = r.str('cluster', '');
    if (known && !known.has(cfg.cluster)) throw r.error('cluster', `unknown cluster '${cfg.cluster}'`);
  } else if (kind === 'weighted_clusters') {
    const w = r.msg('weighted_clusters')!;
    cfg.weighted = w.list('clusters').map((c) => {
      const name = c.str('name', '');
      if (known && !known.has(name)) throw c.error('name', `unknown cluster '${name}'`);
      return { name, weight: c.num('weight', 0) };
    });
    cfg.totalWeight = cfg.weighted.reduce((a, c) => a + c.weight, 0);
    if (cfg.totalWeight === 0) throw w.error('clusters', 'sum of weights must be greater than 0');
  } else {
    throw r.error(
      kind,
      kind ? `'${kind}' is not supported` : "one of 'cluster' or 'weighted_clusters' is required",
    );
  }
  return cfg;
}

class TcpProxyFilter implements NetworkFilter {
  constructor(
    private readonly cfg: TcpProxyConfig,
    private readonly server: ServerContext,
    private readonly stats: TcpProxyStats,
  ) {}

  private pickCluster(): string {
    if (this.cfg.cluster !== undefined) return this.cfg.cluster;
    let x = Math.floor(Math.random() * this.cfg.totalWeight);
    for (const c of this.cfg.weighted!) {
      if (x < c.weight) return c.name;
      x -= c.weight;
    }
    return this.cfg.weighted![0]!.name;
  }

  onNewConnection(conn: DownstreamConnection): NetworkFilterStatus {
    const down = conn.socket;
    this.stats.downstream_cx_total.inc();
    down.pause();
    const info = new StreamInfo();
    info.connectionId = conn.id;
    info.streamId = String(conn.id);
    info.requestedServerName = conn.serverName;
    if (this.cfg.accessLoggers.length) {
      // One access-log entry per connection, when it closes (Envoy's tcp_proxy access log).
      down.once('close', () => {
        info.lastResponseByteMs = info.elapsedMs();
        const c: FormatContext = { info, protocol: '-', ...connectionAddresses(conn) };
        for (const l of this.cfg.accessLoggers) l.log(c);
      });
    }
    const clusterName = this.pickCluster();
    info.upstreamCluster = clusterName;
    const cluster = this.server.clusterManager.get(clusterName);
    if (!cluster) {
      this.stats.downstream_cx_no_route.inc();
      info.setFlag(ResponseFlag.NC);
      down.destroy();
      return NetworkFilterStatus.StopIteration;
    }
    let attempts = 0;
    let pending: net.Socket | undefined;
    const connect = () => {
      attempts++;
      const host = cluster.chooseHost();
      if (!host) {
        cluster.stats.upstream_cx_none_healthy.inc();
        info.setFlag(ResponseFlag.UH);
        down.destroy();
        return;
      }
      info.upstreamHost = host.addressString;
      info.attemptCount = attempts;
      // Circuit breaker: max_connections (cluster and per host) applies to tcp_proxy too.
      const resources = cluster.resources.DEFAULT;
      const perHost = cluster.config.circuitBreakers.perHostMaxConnections.DEFAULT;
      if (
        !resources.connections.canCreate() ||
        (perHost !== undefined && host.activeConnections >= perHost)
      ) {
        cluster.stats.upstream_cx_overflow.inc();
        info.setFlag(ResponseFlag.UO);
        down.destroy();
        return;
      }
      resources.connections.inc();
      host.activeConnections++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        resources.connections.dec();
        host.activeConnections--;
      };
      cluster.stats.upstream_cx_total.inc();
      // Half-open so a client's FIN travels on while the upstream may still answer.
      const { socket: up, readyEvent } = connectToHost(host, cluster.config.tls, true);
      pending = up;
      const timer = setTimeout(() => {
        cluster.stats.upstream_cx_connect_timeout.inc();
        up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      }, timerMs(cluster.config.connectTimeoutMs));
      let connected = false;
      up.once(readyEvent, () => {
        clearTimeout(timer);
        connected = true;
        pending = undefined;
        cluster.stats.upstream_cx_active.inc();
        const upstream = {
          localAddress: up.localAddress ?? '',
          localPort: up.localPort ?? 0,
          connectionId: nextConnectionId(),
        };
        info.upstreamConnection = { connectionInfo: () => upstream };
        this.bridge(down, up, conn.bufferLimit, info);
      });
      up.once('error', (e) => {
        clearTimeout(timer);
        if (connected) return;
        release();
        cluster.stats.upstream_cx_connect_fail.inc();
        log.debug(`tcp_proxy: connect to ${host.addressString} failed: ${e.message}`);
        if (attempts < this.cfg.maxConnectAttempts && !down.destroyed) connect();
        else {
          // Envoy: UF, and URX when more than one attempt was allowed.
          info.setFlag(ResponseFlag.UF);
          if (this.cfg.maxConnectAttempts > 1) info.setFlag(ResponseFlag.URX);
          down.destroy();
        }
      });
      up.once('close', () => {
        release();
        if (connected) cluster.stats.upstream_cx_active.dec();
      });
    };
    // Downstream gone before the upstream connected: abandon the attempt.
    down.once('close', () => pending?.destroy());
    connect();
    return NetworkFilterStatus.StopIteration;
  }

  private bridge(down: net.Socket, up: net.Socket, limit: number, info: StreamInfo): void {
    const stats = this.stats;
    const idle = this.cfg.idleTimeoutMs;
    const onIdle = () => {
      stats.idle_timeout.inc();
      down.destroy();
      up.destroy();
    };
    if (idle > 0) {
      down.setTimeout(timerMs(idle), onIdle);
      up.setTimeout(timerMs(idle), onIdle);
    }
    const fromDown = (chunk: Buffer) => {
      stats.downstream_cx_rx_bytes_total.inc(chunk.length);
      info.bytesReceived += chunk.length;
      // Pause reading only past per_connection_buffer_limit_bytes of unsent data.
      if (!up.write(chunk) && up.writableLength >= limit) {
        down.pause();
        up.once('drain', () => down.resume());
      }
    };
    const fromUp = (chunk: Buffer) => {
      stats.downstream_cx_tx_bytes_total.inc(chunk.length);
      info.bytesSent += chunk.length;
      if (!down.write(chunk) && down.writableLength >= limit) {
        up.pause();
        down.once('drain', () => up.resume());
      }
    };
    // Plain sockets are read through the shared buffer; a write may outlive the read (the
    // kernel may take part of it later), so each chunk is copied once: still cheaper than
    // Node's default read path.
    if (!readDirect(down, (v) => fromDown(own(v)))) down.on('data', fromDown);
    if (!readDirect(up, (v) => fromUp(own(v)))) up.on('data', fromUp);
    // Half-close travels both ways; each side closes once both directions are done.
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    down.resume();
  }
}

export const tcpProxyFactory: ExtensionFactory<NetworkFilterFactory> = {
  name: 'envoy.filters.network.tcp_proxy',
  typeUrls: [TCP_PROXY_TYPE_URL],
  category: 'network_filter',
  create(r, ctx) {
    const cfg = compileTcpProxy(r, ctx);
    let stats: TcpProxyStats | undefined;
    return {
      name: 'envoy.filters.network.tcp_proxy',
      terminal: true,
      createFilter() {
        stats ??= new TcpProxyStats(ctx.server, cfg.statPrefix);
        return new TcpProxyFilter(cfg, ctx.server, stats);
      },
    };
  },
};
