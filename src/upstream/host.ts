// One upstream endpoint as the load balancer sees it.
import { formatAddress } from '../network/address.js';
import type { HealthStatus } from './cluster-config.js';

export class Host {
  /** Requests in flight to this host (least-request LB reads it). */
  activeRequests = 0;
  readonly addressString: string;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly weight: number,
    readonly priority: number,
    /** DNS name this host was resolved from, or the configured hostname. */
    readonly hostname: string,
    public healthStatus: HealthStatus,
  ) {
    this.addressString = formatAddress(address, port);
  }

  /** Envoy counts UNKNOWN and HEALTHY (and DEGRADED, at lower preference) as usable. */
  get healthy(): boolean {
    return this.healthStatus === 'UNKNOWN' || this.healthStatus === 'HEALTHY';
  }
}
