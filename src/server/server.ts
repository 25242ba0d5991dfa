// Herald's server: clusters, listeners and admin, built from one bootstrap.

import { AdminServer } from '../admin/admin-server.js';
import { logger } from '../common/logger.js';
import { timerMs } from '../common/timers.js';
import { initHashing } from '../common/xxhash.js';
import type { JsonObject } from '../config/proto-json.js';
import { loadBootstrapIsolated } from '../config/proto-worker.js';
import { registerBuiltinExtensions } from '../extensions/builtin.js';
import { ActiveListener } from '../listener/listener.js';
import { hashPolicyCompiled } from '../router/hash-policy.js';
import { ClusterManager } from '../upstream/cluster-manager.js';
import { type BootstrapConfig, type CompileOptions, compileBootstrap } from './bootstrap-config.js';
import { ServerContext } from './server-context.js';
import { VERSION } from './version.js';

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
  state: ServerState = 'PRE_INITIALIZING';
  readonly startTime = Date.now();
  private healthCheckFailed = false;
  private stopping: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** What /quitquitquit does after stopping; the CLI sets it to exit the process. */
  onQuit: () => void = () => {};

  /** Loads and validates the bootstrap on a worker thread (keeping proto memory out of this process), then compiles it. */
  static async create(options: ServerOptions): Promise<Server> {
    await initHashing();
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
    return this.healthCheckFailed;
  }

  setHealthCheckFailed(failed: boolean): void {
    this.healthCheckFailed = failed;
  }

  async start(): Promise<void> {
    // xxHash (WebAssembly) only when a route hashes or a cluster balances by hash.
    if (hashingNeeded(this.config)) await initHashing();
    const stats = this.context.stats;
    stats.gauge('server.concurrency').set(this.options.concurrency ?? 1);
    stats.gauge('server.live').set(0);
    this.state = 'INITIALIZING';
    if (this.config.admin) {
      this.admin = new AdminServer(this, this.config.admin);
      await this.admin.listen();
    }
    this.clusterManager = new ClusterManager(this.config.clusters, stats);
    this.context.clusterManager = this.clusterManager;
    await this.clusterManager.initialize();
    for (const lc of this.config.listeners) {
      const l = new ActiveListener(lc, stats);
      const limit = this.config.runtime[`envoy.resource_limits.listener.${lc.name}.connection_limit`];
      await l.listen();
      if (typeof limit === 'number') l.setConnectionLimit(limit);
      this.listeners.push(l);
    }
    stats.counter('listener_manager.listener_added').inc(this.listeners.length);
    stats.counter('cluster_manager.cluster_added').inc(this.config.clusters.length);
    this.state = 'LIVE';
    this.startServerStats();
    log.info(
      `Herald ${VERSION} is live: ${this.listeners.length} listener(s), ${this.config.clusters.length} cluster(s)`,
    );
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
    // Envoy's server.version is a number from the source revision; Herald's is its semver as
    // major * 10000 + minor * 100 + patch (0.1.0 -> 100).
    const [maj = 0, min = 0, pat = 0] = VERSION.split('.').map((x) => Number.parseInt(x, 10) || 0);
    stats.gauge('server.version').set(maj * 10000 + min * 100 + pat);
    const refresh = () => {
      uptime.set(Math.floor((Date.now() - this.startTime) / 1000));
      live.set(this.state === 'LIVE' ? 1 : 0);
      state.set(SERVER_STATE_VALUES[this.state]);
      const m = process.memoryUsage();
      allocated.set(m.heapUsed + m.external);
      heapSize.set(m.heapTotal);
      physical.set(m.rss);
      listenersActive.set(this.listeners.filter((l) => !l.stopped).length);
      clustersActive.set(this.clusterManager.all().length);
    };
    stats.onFlush(refresh);
    refresh();
    const cfg = this.config.stats;
    if (!cfg.flushOnAdmin)
      this.flushTimer = setInterval(() => stats.flush(), timerMs(cfg.flushIntervalMs)).unref();
  }

  /**
   * POST /drain_listeners: stop accepting on every listener (or only INBOUND ones); connections
   * already open carry on. `graceful` waits the drain time (--drain-time-s) first.
   */
  drainListeners(o: { inboundOnly: boolean; graceful: boolean }): void {
    const which = this.listeners.filter((l) => !o.inboundOnly || l.config.trafficDirection === 'INBOUND');
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
      const closing = this.listeners.map((l) => l.close(false));
      if (drainMs > 0) await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, drainMs))]);
      await Promise.all(this.listeners.map((l) => l.close(true)));
      this.clusterManager?.destroy();
      await this.admin?.close();
    })();
    return this.stopping;
  }
}
