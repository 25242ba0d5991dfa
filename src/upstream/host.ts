// One upstream endpoint as the load balancer sees it, with Envoy's health
// flags. Active health checking, outlier detection and EDS each set their own
// flag; a host is used while none of the failing flags is set.
import { formatAddress } from '../network/address.js';
import type { HealthStatus } from './cluster-config.js';

/** Envoy's Host::HealthFlag bits. */
export const HealthFlag = {
  FAILED_ACTIVE_HC: 0x1,
  FAILED_OUTLIER_CHECK: 0x2,
  FAILED_EDS_HEALTH: 0x4,
  DEGRADED_ACTIVE_HC: 0x8,
  DEGRADED_EDS_HEALTH: 0x10,
  PENDING_DYNAMIC_REMOVAL: 0x20,
  PENDING_ACTIVE_HC: 0x40,
  EXCLUDED_VIA_IMMEDIATE_HC_FAIL: 0x80,
  ACTIVE_HC_TIMEOUT: 0x100,
} as const;

/** Flags that take a host out of the healthy set. */
const UNHEALTHY_MASK =
  HealthFlag.FAILED_ACTIVE_HC | HealthFlag.FAILED_OUTLIER_CHECK | HealthFlag.FAILED_EDS_HEALTH;

/**
 * Flags that exclude a host: it leaves the healthy set and the denominators of priority load and
 * panic mode, but panic mode may still pick it (Envoy's "excluded endpoints").
 */
const EXCLUDED_MASK =
  HealthFlag.PENDING_DYNAMIC_REMOVAL |
  HealthFlag.PENDING_ACTIVE_HC |
  HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL;

/** Envoy's names for /clusters `health_flags` (HostUtility::healthFlagsToString). */
const FLAG_NAMES: [number, string][] = [
  [HealthFlag.FAILED_ACTIVE_HC, '/failed_active_hc'],
  [HealthFlag.FAILED_OUTLIER_CHECK, '/failed_outlier_check'],
  [HealthFlag.FAILED_EDS_HEALTH, '/failed_eds_health'],
  [HealthFlag.DEGRADED_ACTIVE_HC, '/degraded_active_hc'],
  [HealthFlag.DEGRADED_EDS_HEALTH, '/degraded_eds_health'],
  [HealthFlag.PENDING_DYNAMIC_REMOVAL, '/pending_dynamic_removal'],
  [HealthFlag.PENDING_ACTIVE_HC, '/pending_active_hc'],
  [HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL, '/excluded_via_immediate_hc_fail'],
  [HealthFlag.ACTIVE_HC_TIMEOUT, '/active_hc_timeout'],
];

/** What a request told about a host, in Envoy's Outlier::Result terms. */
export type OutlierResult =
  | 'LOCAL_ORIGIN_CONNECT_FAILED'
  | 'LOCAL_ORIGIN_CONNECT_SUCCESS'
  | 'LOCAL_ORIGIN_TIMEOUT'
  | 'LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL'
  | 'EXT_ORIGIN_REQUEST_FAILED'
  | 'EXT_ORIGIN_REQUEST_SUCCESS';

/** The per-host side of active health checking: what a routed response can tell the checker. */
export interface HealthCheckHostMonitor {
  /** `x-envoy-immediate-health-check-fail` on a response: fail (and exclude) the host now. */
  setUnhealthy(type: 'IMMEDIATE_HEALTH_CHECK_FAIL'): void;
}

/** The per-host side of outlier detection; the router and pools report into it. */
export interface HostOutlierMonitor {
  putHttpResponseCode(code: number): void;
  putResult(result: OutlierResult, code?: number): void;
  putResponseTimeMs(ms: number): void;
}

export class Host {
  /** Requests in flight to this host (least-request LB reads it). */
  activeRequests = 0;
  /** Connections open to this host (per_host_thresholds.max_connections). */
  activeConnections = 0;
  readonly addressString: string;
  /** HealthFlag bits. */
  healthFlags = 0;
  /** Set when the cluster has outlier detection. */
  outlier: HostOutlierMonitor | undefined;
  /** Set when the cluster has an active health checker. */
  healthChecker: HealthCheckHostMonitor | undefined;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly weight: number,
    readonly priority: number,
    /** DNS name this host was resolved from, or the configured hostname. */
    readonly hostname: string,
    readonly healthStatus: HealthStatus,
  ) {
    this.addressString = formatAddress(address, port);
    // EDS/config health: UNHEALTHY, DRAINING and TIMEOUT exclude; DEGRADED is usable at lower preference.
    if (healthStatus === 'UNHEALTHY' || healthStatus === 'DRAINING' || healthStatus === 'TIMEOUT')
      this.healthFlags |= HealthFlag.FAILED_EDS_HEALTH;
    else if (healthStatus === 'DEGRADED') this.healthFlags |= HealthFlag.DEGRADED_EDS_HEALTH;
  }

  get healthy(): boolean {
    return (this.healthFlags & (UNHEALTHY_MASK | EXCLUDED_MASK)) === 0;
  }

  get excluded(): boolean {
    return (this.healthFlags & EXCLUDED_MASK) !== 0;
  }

  hasFlag(flag: number): boolean {
    return (this.healthFlags & flag) !== 0;
  }

  /** `healthy` or the set flags, as Envoy's /clusters prints them. */
  healthFlagsString(): string {
    if (this.healthFlags === 0) return 'healthy';
    let s = '';
    for (const [bit, name] of FLAG_NAMES) if (this.healthFlags & bit) s += name;
    return s;
  }
}
