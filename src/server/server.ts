// Herald's server: clusters, listeners and admin, built from one bootstrap.

import { AdminServer } from '../admin/admin-server.js';
import { logger } from '../common/logger.js';
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
    stats.gauge('listener_manager.total_listeners_active').set(this.listeners.length);
    this.state = 'LIVE';
    stats.gauge('server.live').set(1);
    stats.gauge('server.state').set(0);
    log.info(
      `Herald ${VERSION} is live: ${this.listeners.length} listener(s), ${this.config.clusters.length} cluster(s)`,
    );
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
      const closing = this.listeners.map((l) => l.close(false));
      if (drainMs > 0) await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, drainMs))]);
      await Promise.all(this.listeners.map((l) => l.close(true)));
      this.clusterManager?.destroy();
      await this.admin?.close();
    })();
    return this.stopping;
  }
}
