// What config-time factories may hold on to: filled in as the server starts.
// Compilation (and --mode validate) only reads `knownClusters`; the rest is
// used when connections arrive.
import { RdsRegistry } from '../router/rds.js';
import { StatsStore } from '../stats/store.js';
import { SecretRegistry } from '../tls/secrets.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';

export class ServerContext {
  readonly stats = new StatsStore();
  /** Route configurations delivered by RDS, by name. */
  readonly rds = new RdsRegistry();
  /** TLS secrets by name (SDS and static_resources.secrets). */
  readonly secrets = new SecretRegistry();
  /** Names of the clusters in the bootstrap, for route validation (validate_clusters). */
  knownClusters: Set<string> | undefined = new Set<string>();
  /** The bootstrap's node.cluster (or --service-cluster): Envoy's local cluster name. */
  localClusterName = '';
  /** Set by admin POST /healthcheck/fail, cleared by /healthcheck/ok (in every worker too). */
  healthCheckFailed = false;
  private cm: ClusterManager | undefined;

  get clusterManager(): ClusterManager {
    if (!this.cm) throw new Error('cluster manager used before the server started');
    return this.cm;
  }

  set clusterManager(cm: ClusterManager) {
    this.cm = cm;
  }
}
