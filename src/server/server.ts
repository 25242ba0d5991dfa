// Herald's server: clusters, listeners and admin, built from one bootstrap.

import type { AdminServer } from '../admin/admin-server.js';
import { daysUntilFirstCertExpiring, type TlsContextCertificates } from '../admin/certs.js';
import { memoryUsage } from '../admin/memory.js';
import { allLoggers, logger } from '../common/logger.js';
import { createSharedCounters } from '../common/shared-counters.js';
import { timerMs } from '../common/timers.js';
import { initHashing } from '../common/xxhash.js';
import type { JsonObject } from '../config/proto-json.js';
import { loadBootstrapIsolated } from '../config/proto-worker.js';
import { registerBuiltinExtensions } from '../extensions/builtin.js';
import { ActiveListener } from '../listener/listener.js';
import type { ListenerConfig } from '../listener/listener-config.js';
import type { DownstreamTransport } from '../listener/transport-socket.js';
import { hashPolicyCompiled } from '../router/hash-policy.js';
import type { RouteConfigHolder } from '../router/rds.js';
import type { Cluster, HostSnapshot, OutlierEvent } from '../upstream/cluster.js';
import { ClusterManager } from '../upstream/cluster-manager.js';
import { applyResources, type XdsResource } from '../xds/apply.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE } from '../xds/type-urls.js';
import type { XdsManager } from '../xds/xds-manager.js';
import { type BootstrapConfig, type CompileOptions, compileBootstrap } from './bootstrap-config.js';
import { ServerContext } from './server-context.js';
import { VERSION } from './version.js';
import type { WorkerListener } from './worker-protocol.js';
import type { WorkerManager } from './workers.js';

const log = logger('main');

/** Envoy's server.state values (envoy.admin.v3.ServerInfo.State). */
const SERVER_STATE_VALUES: Record<ServerState, number> = {
  LIVE: 0,
  DRAINING: 1,
  PRE_INITIALIZING: 2,
  INITIALIZING: 3,
};

export type ServerState = 'INITIALIZING' | 'LIVE' | 'DRAINING' | 'PRE_INITIALIZING';

export interface ServerOptions extends CompileOptions {
  configPath?: string | undefined;
  configYaml?: string | undefined;
  concurrency?: number;
  drainTimeS?: number;
  /** The command line as given, for /server_info. */
  commandLine?: Record<string, unknown>;
  /** Set in a worker process: what the main process gave it. */
  worker?: {
    index: number;
    listeners: WorkerListener[];
    hostHealth: Record<string, Array<[string, number]>>;
    reportImmediateFail(cluster: string, address: string): void;
    reportOutlier(cluster: string, address: string, event: OutlierEvent): void;
    /** DNS clusters: the hosts the main process resolved (it resolves for every process). */
    resolvedHosts(cluster: string): HostSnapshot[] | undefined;
    dynamic?: Array<{ typeUrl: string; resources: XdsResource[]; ports?: Record<string, number> }>;
  };
}

let lastFlushError = 0;
/** A failed stats flush: logged, at most once a minute. */
function flushFailed(e: unknown): void {
  const now = Date.now();
  if (now - lastFlushError < 60_000) return;
  lastFlushError = now;
  log.error(`stats flush failed: ${(e as Error).message}`);
}

function hashingNeeded(c: BootstrapConfig): boolean {
  return (
    hashPolicyCompiled() || c.clusters.some((x) => x.lbPolicy === 'RING_HASH' || x.lbPolicy === 'MAGLEV')
  );
}

export class Server {
  readonly context = new ServerContext();
  readonly config: BootstrapConfig;
  readonly listeners: ActiveListener[] = [];
  clusterManager!: ClusterManager;
  admin: AdminServer | undefined;
  /** The worker processes, when this is the main process of several (--concurrency > 1). */
  workers: WorkerManager | undefined;
  state: ServerState = 'PRE_INITIALIZING';
  readonly startTime = Date.now();
  private stopping: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** What /quitquitquit does after stopping; the CLI sets it to exit the process. */
  onQuit: () => void = () => {};

  /** Loads and validates the bootstrap in a child process (keeping proto memory out of this process), then compiles it. */
  static async create(options: ServerOptions): Promise<Server> {
    const canonical = await loadBootstrapIsolated({
      path: options.configPath,
      configYaml: options.configYaml,
    });
    return new Server(options, canonical);
  }

  /** `canonical` is a bootstrap already validated against the protos (see Server.create). */
  constructor(
    readonly options: ServerOptions,
    canonical: JsonObject,
  ) {
    registerBuiltinExtensions();
    this.config = compileBootstrap(canonical, this.context, options);
  }

  get version(): string {
    return VERSION;
  }

  get healthCheckFailing(): boolean {
    return this.context.healthCheckFailed;
  }

  setHealthCheckFailed(failed: boolean): void {
    this.context.healthCheckFailed = failed;
  }

  /** 'single': one process does everything; 'main' + 'worker': --concurrency > 1. */
  get role(): 'single' | 'main' | 'worker' {
    if (this.options.worker) return 'worker';
    return (this.options.concurrency ?? 1) > 1 ? 'main' : 'single';
  }

  async start(): Promise<void> {
    // xxHash (WebAssembly) only when a route hashes or a cluster balances by hash.
    if (hashingNeeded(this.config)) await initHashing();
    const stats = this.context.stats;
    const role = this.role;
    stats.gauge('server.concurrency').set(this.options.concurrency ?? 1);
    stats.gauge('server.live').set(0);
    this.state = 'INITIALIZING';
    if (this.config.admin && role !== 'worker') {
      // Loaded only here: the admin server brings node:http, which the data path never uses.
      const { AdminServer } = await import('../admin/admin-server.js');
      this.admin = new AdminServer(this, this.config.admin);
      await this.admin.listen();
    }
    let sharedCounters = -1;
    // Circuit-breaker counts shared with the workers: limits hold for the whole proxy.
    if (role === 'main') sharedCounters = createSharedCounters();
    const worker = this.options.worker;
    this.clusterManager = new ClusterManager(this.config.clusters, stats, worker);
    this.context.clusterManager = this.clusterManager;
    if (worker) {
      for (const [name, hosts] of Object.entries(worker.hostHealth)) {
        const c = this.clusterManager.get(name);
        for (const [addr, bits] of hosts) c?.applyRemoteHealth(addr, bits);
      }
    }
    await this.clusterManager.initialize();
    if (role === 'main') await this.startWorkers(sharedCounters);
    else {
      for (const lc of this.config.listeners) {
        const l = this.newListener(lc);
        const given = worker?.listeners.find((x) => x.name === lc.name);
        await l.listen(given);
        const limit = this.config.runtime[`envoy.resource_limits.listener.${lc.name}.connection_limit`];
        if (typeof limit === 'number') l.setConnectionLimit(limit);
        this.listeners.push(l);
      }
    }
    if (worker) {
      // Dynamic resources the main process had applied before this worker started.
      for (const d of worker.dynamic ?? [])
        await applyResources(this, d.typeUrl, d.resources, [], undefined, d.ports);
    } else await this.startXds();
    stats.counter('listener_manager.listener_added').inc(this.listeners.length);
    stats.counter('cluster_manager.cluster_added').inc(this.config.clusters.length);
    this.state = 'LIVE';
    stats.gauge('server.live').set(1);
    stats.gauge('server.state').set(0);
    this.startServerStats();
    if (role !== 'worker')
      log.info(
        `Herald ${VERSION} is live: ${this.listeners.length} listener(s), ${this.config.clusters.length} cluster(s)${role === 'main' ? `, ${this.workers?.size} workers` : ''}`,
      );
  }

  /** Main process: binds the listeners, starts the workers, and shares host health with them. */
  private async startWorkers(sharedCounters: number): Promise<void> {
    const cm = this.clusterManager;
    // Loaded only with --concurrency > 1: a single process forks no workers.
    const { WorkerManager } = await import('./workers.js');
    const workers = new WorkerManager({
      concurrency: this.options.concurrency ?? 1,
      canonical: this.config.canonical,
      serviceCluster: this.options.serviceCluster,
      serviceNode: this.options.serviceNode,
      watchdog: this.config.watchdog,
      sharedCounters,
      drainTimeMs: (this.options.drainTimeS ?? 600) * 1000,
      healthCheckFailed: () => this.healthCheckFailing,
      hostHealth: () => Object.fromEntries(cm.all().map((c) => [c.name, c.activeHealthSnapshot()])),
      resolvedHosts: () =>
        Object.fromEntries(
          cm
            .all()
            .filter((c) => c.config.type === 'STRICT_DNS' || c.config.type === 'LOGICAL_DNS')
            .map((c) => [c.name, c.hostSnapshot()]),
        ),
      dynamicState: () =>
        [SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, LISTENER_TYPE].flatMap((typeUrl) => {
          const m = this.dynamicState.get(typeUrl);
          if (!m?.size) return [];
          return [
            {
              typeUrl,
              resources: [...m.values()],
              ...(typeUrl === LISTENER_TYPE ? { ports: this.listenerPorts() } : {}),
            },
          ];
        }),
      onOutlierEvents: (events) => {
        for (const [cluster, address, e] of events) {
          const host = cm
            .get(cluster)
            ?.allHosts()
            .find((h) => h.addressString === address);
          const o = host?.outlier;
          if (!o) continue;
          if (e[0] === 'code') o.putHttpResponseCode(e[1]);
          else if (e[0] === 'result') o.putResult(e[1], e[2]);
          else o.putResponseTimeMs(e[1]);
        }
      },
      onImmediateFail: (cluster, address) => {
        for (const h of cm.get(cluster)?.allHosts() ?? [])
          if (h.addressString === address) h.healthChecker?.setUnhealthy('IMMEDIATE_HEALTH_CHECK_FAIL');
      },
      stats: this.context.stats,
    });
    this.workers = workers;
    const share = (c: Cluster) => {
      const name = c.name;
      c.onActiveHealthChange = (a, b) => workers.broadcast({ t: 'hc', c: name, a, b });
      c.refreshHealth(); // records what every worker starts from
      // DNS is resolved here once, and each result sent to the workers (Envoy's main thread does it).
      c.onResolvedHosts = (hosts) => workers.broadcast({ t: 'hosts', c: name, hosts });
    };
    for (const c of cm.all()) share(c);
    cm.onClusterAdded = share;
    const ports = workers.bind(this.config.listeners);
    for (const lc of this.config.listeners) {
      // The main process's view of a listener: its name and port (workers do the accepting).
      const l = new ActiveListener(lc, this.context.stats);
      await l.listen({ port: ports.get(lc.name) ?? 0 });
      this.listeners.push(l);
    }
    await workers.start();
  }

  /** Dynamic resources in force, by type URL and name (for /config_dump and new workers). */
  readonly dynamicState = new Map<string, Map<string, XdsResource>>();
  /** EDS assignments in force, by cluster_name. */
  readonly edsVersions = new Map<string, { version: string; lastUpdated: number; resource: unknown }>();
  /** LDS listeners: version and update time, by name. */
  readonly dynamicListeners = new Map<string, { version: string; lastUpdated: number; resource: unknown }>();
  xds: XdsManager | undefined;
  /** Told of each listener this process creates (a worker reports closed connections). */
  onListenerCreated: ((l: ActiveListener) => void) | undefined;

  private async startXds(): Promise<void> {
    const dyn = this.config.dynamic;
    const dynamicSources =
      dyn?.lds !== undefined ||
      dyn?.cds !== undefined ||
      this.config.clusters.some((c) => c.eds) ||
      this.context.rds.all().length > 0 ||
      this.context.secrets.names().some(([, src]) => src !== undefined);
    if (!dyn?.ads && !dynamicSources) return;
    const targetOf = (cluster: string) => {
      const c = this.config.clusters.find((x) => x.name === cluster);
      const ep = c?.localities[0]?.endpoints[0];
      if (!ep) throw new Error(`xDS cluster '${cluster}' has no endpoint`);
      const host = ep.address.host.includes(':') ? `[${ep.address.host}]` : ep.address.host;
      return `${host}:${ep.address.port}`;
    };
    const ads = dyn?.ads ? { target: targetOf(dyn.ads.cluster), apiType: dyn.ads.apiType } : undefined;
    // Loaded only now: the xDS client brings gRPC, which a static config never needs.
    const { XdsManager } = await import('../xds/xds-manager.js');
    this.xds = new XdsManager(this, ads, dyn ?? { lds: undefined, cds: undefined }, targetOf);
    await this.xds.start();
  }

  /**
   * LDS: adds a listener, or changes one. Same address: it keeps its socket, new connections take
   * the new config and open ones are asked to wind down. Otherwise the old one drains and a new
   * one binds. `port`: in a worker, where the main process bound it.
   */
  async applyListener(
    config: ListenerConfig,
    version: string,
    resource: unknown,
    port?: number,
  ): Promise<void> {
    this.dynamicListeners.set(config.name, { version, lastUpdated: Date.now(), resource });
    const stats = this.context.stats;
    const old = this.listeners.find((l) => l.name === config.name);
    const sameAddress =
      old &&
      old.config.address.host === config.address.host &&
      old.config.address.port === config.address.port;
    if (old && sameAddress) {
      old.updateConfig(config);
      this.workers?.updateDynamic(config);
      stats.counter('listener_manager.listener_modified').inc();
      return;
    }
    // Warming: a listener starts once the route tables and TLS secrets it uses have arrived (or
    // their initial fetch timed out).
    const holders = routeConfigHolders(config).filter((h) => !h.warm);
    const secrets = transports(config).filter((t) => !t.secureContext && t.ready);
    if (holders.length || secrets.length) {
      const limit = Math.max(
        0,
        ...holders.map((h) => h.source.initialFetchTimeoutMs),
        ...secrets.map((t) => t.initialFetchTimeoutMs ?? 0),
      );
      await Promise.race([
        Promise.all([...holders.map((h) => h.whenWarm()), ...secrets.map((t) => t.ready)]),
        ...(limit > 0 ? [new Promise((r) => setTimeout(r, limit).unref())] : []),
      ]);
    }
    if (old) await this.removeListener(config.name, false);
    const l = this.newListener(config);
    if (this.workers) await l.listen({ port: this.workers.bindDynamic(config) });
    else if (this.options.worker) await l.listen({ port: port ?? config.address.port });
    else await l.listen();
    this.onListenerCreated?.(l);
    this.listeners.push(l);
    stats.counter('listener_manager.listener_added').inc();
    stats.gauge('listener_manager.total_listeners_active').set(this.listeners.length);
  }

  /** LDS removal: the listener stops accepting; its connections drain. */
  async removeListener(name: string, count = true): Promise<void> {
    const i = this.listeners.findIndex((l) => l.name === name);
    if (i < 0) return;
    const [l] = this.listeners.splice(i, 1);
    this.workers?.unbindDynamic(name);
    if (count) {
      this.dynamicListeners.delete(name);
      this.context.stats.counter('listener_manager.listener_removed').inc();
    }
    this.context.stats.gauge('listener_manager.total_listeners_active').set(this.listeners.length);
    void l!.remove();
  }

  private newListener(config: ListenerConfig): ActiveListener {
    const l = new ActiveListener(config, this.context.stats, this.options.worker?.index ?? 0);
    l.drainTimeMs = (this.options.drainTimeS ?? 600) * 1000;
    return l;
  }

  /** Bound ports of the listeners by name (what workers need for LDS listeners). */
  listenerPorts(): Record<string, number> {
    return Object.fromEntries(this.listeners.map((l) => [l.name, l.boundPort]));
  }

  /**
   * Every TLS context in force (/certs): each listener filter chain's DownstreamTlsContext, then
   * each cluster's UpstreamTlsContext.
   */
  tlsContexts(): TlsContextCertificates[] {
    const out: TlsContextCertificates[] = [];
    for (const l of this.listeners) {
      const chains = [...l.config.filterChains];
      if (l.config.defaultFilterChain) chains.push(l.config.defaultFilterChain);
      for (const fc of chains) if (fc.transport) out.push(fc.transport);
    }
    for (const c of this.clusterManager?.all() ?? []) if (c.config.tls) out.push(c.config.tls);
    return out;
  }

  /** Carries an admin change that workers must see too (log levels, log reopening, draining). */
  async afterAdminMutation(path: string): Promise<void> {
    const workers = this.workers;
    if (!workers) return;
    if (path === '/logging') {
      const levels: Record<string, string> = {};
      for (const l of allLoggers()) levels[l.name] = String(l.level);
      workers.broadcast({ t: 'log', levels });
    } else if (path === '/reopen_logs') workers.broadcast({ t: 'reopen' });
    else if (path === '/healthcheck/fail' || path === '/healthcheck/ok')
      workers.broadcast({ t: 'hcstate', failed: this.healthCheckFailing });
    // A round trip: each worker has handled what was sent before it answers.
    await workers.flushStats();
  }

  /**
   * Envoy's server stats, refreshed on each stats flush (stats_flush_interval, default 5 s, or
   * every admin read with stats_flush_on_admin); the timer does not keep the process alive.
   */
  private startServerStats(): void {
    const stats = this.context.stats;
    const uptime = stats.gauge('server.uptime');
    const live = stats.gauge('server.live');
    const state = stats.gauge('server.state');
    const allocated = stats.gauge('server.memory_allocated');
    const heapSize = stats.gauge('server.memory_heap_size');
    const physical = stats.gauge('server.memory_physical_size');
    const listenersActive = stats.gauge('listener_manager.total_listeners_active');
    const clustersActive = stats.gauge('cluster_manager.active_clusters');
    const certExpiry = stats.gauge('server.days_until_first_cert_expiring');
    // Envoy's server.version is a number from the source revision; Herald's is its semver as
    // major * 10000 + minor * 100 + patch (0.1.0 -> 100).
    const [maj = 0, min = 0, pat = 0] = VERSION.split('.').map((x) => Number.parseInt(x, 10) || 0);
    stats.gauge('server.version').set(maj * 10000 + min * 100 + pat);
    const refresh = () => {
      uptime.set(Math.floor((Date.now() - this.startTime) / 1000));
      live.set(this.state === 'LIVE' ? 1 : 0);
      state.set(SERVER_STATE_VALUES[this.state]);
      // At the fd limit process.memoryUsage() throws (it reads /proc): V8's figures and the last RSS.
      const m = memoryUsage(() => physical.value);
      allocated.set(m.heapUsed + m.external);
      heapSize.set(m.heapTotal);
      if (m.rss > 0) physical.set(m.rss);
      listenersActive.set(this.listeners.filter((l) => !l.stopped).length);
      clustersActive.set(this.clusterManager.all().length);
      certExpiry.set(daysUntilFirstCertExpiring(this.tlsContexts()));
    };
    stats.onFlush(() => {
      try {
        refresh();
      } catch (e) {
        // A stats refresh must never take the process down (it runs on a timer).
        flushFailed(e);
      }
    });
    refresh();
    const cfg = this.config.stats;
    if (!cfg.flushOnAdmin)
      this.flushTimer = setInterval(() => {
        try {
          stats.flush();
        } catch (e) {
          flushFailed(e);
        }
      }, timerMs(cfg.flushIntervalMs)).unref();
  }

  /**
   * POST /drain_listeners: stop accepting on every listener (or only INBOUND ones); connections
   * already open carry on. `graceful` waits the drain time (--drain-time-s) first.
   */
  drainListeners(o: { inboundOnly: boolean; graceful: boolean }): void {
    const which = this.listeners.filter((l) => !o.inboundOnly || l.config.trafficDirection === 'INBOUND');
    // Workers drain their own listeners the same way; the main process keeps the counts.
    this.workers?.drainListeners(o, new Set(which.map((l) => l.name)));
    // Graceful: connections are asked to close (HTTP/1 `connection: close`, HTTP/2 GOAWAY) at once.
    if (o.graceful) for (const l of which) l.encourageDrain();
    const stop = () => {
      for (const l of which) l.stopListening();
      this.context.stats
        .gauge('listener_manager.total_listeners_active')
        .set(this.listeners.filter((l) => !l.stopped).length);
    };
    if (!o.graceful) {
      stop();
      return;
    }
    clearTimeout(this.drainTimer);
    this.drainTimer = setTimeout(stop, timerMs((this.options.drainTimeS ?? 600) * 1000)).unref();
  }

  listenerPort(name: string): number {
    const l = this.listeners.find((x) => x.name === name);
    if (!l) throw new Error(`no listener '${name}'`);
    return l.boundPort;
  }

  quit(): void {
    void this.stop().then(() => this.onQuit());
  }

  /** Stops accepting, waits up to the drain time for connections to finish, then closes everything. */
  stop(drainMs = 0): Promise<void> {
    this.stopping ??= (async () => {
      this.state = 'DRAINING';
      clearInterval(this.flushTimer);
      clearTimeout(this.drainTimer);
      this.xds?.close();
      if (this.workers) {
        await this.workers.stop(drainMs);
        this.clusterManager?.destroy();
        await this.admin?.close();
        return;
      }
      const closing = this.listeners.map((l) => l.drain());
      if (drainMs > 0) await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, drainMs))]);
      await Promise.all(this.listeners.map((l) => l.close(true)));
      this.clusterManager?.destroy();
      await this.admin?.close();
    })();
    return this.stopping;
  }
}

/** The RDS route configurations a listener's connection managers use. */
function routeConfigHolders(config: ListenerConfig): RouteConfigHolder[] {
  const chains = [...config.filterChains, ...(config.defaultFilterChain ? [config.defaultFilterChain] : [])];
  return chains.flatMap((c) => c.filterFactories.flatMap((f) => f.routeConfigs ?? []));
}

/** The TLS transports of a listener's filter chains. */
function transports(config: ListenerConfig): DownstreamTransport[] {
  const chains = [...config.filterChains, ...(config.defaultFilterChain ? [config.defaultFilterChain] : [])];
  return chains.flatMap((c) => (c.transport ? [c.transport] : []));
}
