// All clusters by name. Built from the bootstrap's static clusters; xDS adds and removes later.
import type { StatsStore } from '../stats/store.js';
import { Cluster, type RemoteHealth } from './cluster.js';
import type { ClusterConfig } from './cluster-config.js';

export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();

  /** Clusters that came from CDS (the rest are static), with their version and update time. */
  readonly dynamic = new Map<string, { version: string; lastUpdated: number; resource: unknown }>();

  constructor(
    configs: readonly ClusterConfig[],
    private readonly stats: StatsStore,
    private readonly remoteHealth?: RemoteHealth,
  ) {
    for (const c of configs)
      this.clusters.set(c.name, new Cluster(c, stats.scope(`cluster.${c.name}.`), remoteHealth));
    stats.gauge('cluster_manager.active_clusters').set(this.clusters.size);
  }

  /**
   * CDS: adds a cluster, or replaces one (the old one finishes its requests in flight and closes
   * its connections). Resolves when the new cluster is warm (EDS, health checks).
   */
  addOrUpdate(config: ClusterConfig): Promise<void> {
    const old = this.clusters.get(config.name);
    const c = new Cluster(config, this.stats.scope(`cluster.${config.name}.`), this.remoteHealth);
    this.onClusterAdded?.(c);
    this.clusters.set(config.name, c);
    old?.retire();
    this.stats.counter(old ? 'cluster_manager.cluster_modified' : 'cluster_manager.cluster_added').inc();
    this.stats.gauge('cluster_manager.active_clusters').set(this.clusters.size);
    return c.initialized;
  }

  /** CDS removal: new requests get 503 NC; requests in flight finish. */
  remove(name: string): void {
    const c = this.clusters.get(name);
    if (!c) return;
    this.clusters.delete(name);
    this.dynamic.delete(name);
    c.retire();
    this.stats.counter('cluster_manager.cluster_removed').inc();
    this.stats.gauge('cluster_manager.active_clusters').set(this.clusters.size);
  }

  /** Told of every cluster added later (the main process shares its health with workers). */
  onClusterAdded: ((c: Cluster) => void) | undefined;

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  all(): Cluster[] {
    return [...this.clusters.values()];
  }

  /** Resolves when every cluster finished its first discovery (Envoy's cluster warming). */
  async initialize(): Promise<void> {
    await Promise.all(this.all().map((c) => c.initialized));
    this.stats.gauge('cluster_manager.warming_clusters').set(0);
  }

  destroy(): void {
    for (const c of this.clusters.values()) c.destroy();
  }
}
