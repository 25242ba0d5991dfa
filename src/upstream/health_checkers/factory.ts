// The health checker for a cluster's HealthCheck config, by checker kind.
import type { StatsScope } from '../../stats/store.js';
import type { CheckedCluster, HealthChecker } from './base.js';
import type { HealthCheckConfig } from './config.js';
import { GrpcHealthChecker } from './grpc.js';
import { HttpHealthChecker } from './http.js';
import { TcpHealthChecker } from './tcp.js';

export function createHealthChecker(
  cluster: CheckedCluster,
  config: HealthCheckConfig,
  scope: StatsScope,
): HealthChecker {
  switch (config.checker.kind) {
    case 'http':
      return new HttpHealthChecker(cluster, config, scope);
    case 'tcp':
      return new TcpHealthChecker(cluster, config, scope);
    case 'grpc':
      return new GrpcHealthChecker(cluster, config, scope);
  }
}
