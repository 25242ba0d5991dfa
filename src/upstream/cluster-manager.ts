// All clusters by name. Built from the bootstrap's static clusters; xDS adds and removes later.
import type { StatsStore } from '../stats/store.js';
import { Cluster, type RemoteHealth } from './cluster.js';
import type { ClusterConfig } from './cluster-config.js';

export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();

  constructor(
    configs: readonly ClusterConfig[],
    private readonly stats: StatsStore,
    remoteHealth?: RemoteHealth,
  ) {
    for (const c of configs)
      this.clusters.set(c.name, new Cluster(c, stats.scope(`cluster.${c.name}.`), remoteHealth));
    stats.gauge('cluster_manager.active_clusters').set(this.clusters.size);
  }

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
