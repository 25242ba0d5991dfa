// Circuit breakers: Envoy's per-cluster, per-priority resource limits
// (connections, pending requests, requests, retries, connection pools). A
// resource is "open" (gauge circuit_breakers.<priority>.<x>_open = 1) while
// its count is at the limit; remaining_* gauges exist with track_remaining.

import { allocateSlot } from '../common/shared-counters.js';
import type { Reader } from '../config/reader.js';
import type { Gauge, StatsScope } from '../stats/store.js';

export type ResourcePriority = 'DEFAULT' | 'HIGH';

export interface ThresholdsConfig {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
  maxConnectionPools: number;
  /** retry_budget: concurrent retries as a percentage of active + pending requests, with a floor. */
  retryBudget: { budgetPercent: number; minRetryConcurrency: number } | undefined;
  trackRemaining: boolean;
}

export interface CircuitBreakersConfig {
  DEFAULT: ThresholdsConfig;
  HIGH: ThresholdsConfig;
  /** per_host_thresholds.max_connections (per priority; undefined = no per-host limit). */
  perHostMaxConnections: { DEFAULT: number | undefined; HIGH: number | undefined };
}

/** Envoy's defaults: 1024 connections, pending requests and requests, 3 retries. */
export function defaultThresholds(): ThresholdsConfig {
  return {
    maxConnections: 1024,
    maxPendingRequests: 1024,
    maxRequests: 1024,
    maxRetries: 3,
    maxConnectionPools: Number.MAX_SAFE_INTEGER,
    retryBudget: undefined,
    trackRemaining: false,
  };
}

export function defaultCircuitBreakers(): CircuitBreakersConfig {
  return {
    DEFAULT: defaultThresholds(),
    HIGH: defaultThresholds(),
    perHostMaxConnections: { DEFAULT: undefined, HIGH: undefined },
  };
}

/** cluster.circuit_breakers. */
export function compileCircuitBreakers(r: Reader): CircuitBreakersConfig {
  const out = defaultCircuitBreakers();
  const seen = new Set<string>();
  for (const t of r.list('thresholds')) {
    const p = t.enum<ResourcePriority>('priority', 'DEFAULT');
    if (seen.has(p)) throw t.error('priority', `duplicate thresholds for priority ${p}`);
    seen.add(p);
    const th = out[p];
    th.maxConnections = t.num('max_connections', 1024);
    th.maxPendingRequests = t.num('max_pending_requests', 1024);
    th.maxRequests = t.num('max_requests', 1024);
    th.maxRetries = t.num('max_retries', 3);
    const pools = t.num('max_connection_pools');
    if (pools !== undefined) th.maxConnectionPools = pools;
    th.trackRemaining = t.bool('track_remaining');
    const rb = t.msg('retry_budget');
    if (rb) {
      th.retryBudget = {
        budgetPercent: rb.msg('budget_percent')?.num('value', 20) ?? 20,
        minRetryConcurrency: rb.num('min_retry_concurrency', 3),
      };
    }
  }
  const hostSeen = new Set<string>();
  for (const t of r.list('per_host_thresholds')) {
    const p = t.enum<ResourcePriority>('priority', 'DEFAULT');
    if (hostSeen.has(p)) throw t.error('priority', `duplicate per_host_thresholds for priority ${p}`);
    hostSeen.add(p);
    // Envoy honours only max_connections per host; the others are rejected rather than ignored.
    for (const k of [
      'max_pending_requests',
      'max_requests',
      'max_retries',
      'retry_budget',
      'max_connection_pools',
    ])
      if (t.has(k)) throw t.error(k, 'only max_connections is supported in per_host_thresholds');
    t.bool('track_remaining');
    out.perHostMaxConnections[p] = t.num('max_connections');
  }
  return out;
}

/**
 * One limited resource with its open/remaining gauges. The count is shared by every Herald
 * process (see shared-counters.ts), so a limit holds for the whole proxy.
 */
export class Resource {
  private readonly slot = allocateSlot();

  constructor(
    private readonly limit: () => number,
    private readonly open: Gauge,
    private readonly remaining: Gauge | undefined,
  ) {
    this.update();
  }

  get count(): number {
    return Atomics.load(this.slot.array, this.slot.index);
  }

  get max(): number {
    return this.limit();
  }

  canCreate(): boolean {
    return this.count < this.limit();
  }

  inc(): void {
    Atomics.add(this.slot.array, this.slot.index, 1);
    this.update();
  }

  dec(): void {
    const { array, index } = this.slot;
    // Never below zero, even if another process raced us to it.
    if (Atomics.sub(array, index, 1) <= 0) Atomics.add(array, index, 1);
    this.update();
  }

  update(): void {
    const max = this.limit();
    this.open.set(this.count >= max ? 1 : 0);
    this.remaining?.set(Math.max(0, max - this.count));
  }
}

/** The resources of one cluster at one priority. */
export class ResourceManager {
  readonly connections: Resource;
  readonly pendingRequests: Resource;
  readonly requests: Resource;
  readonly retries: Resource;
  readonly connectionPools: Resource;

  constructor(
    readonly thresholds: ThresholdsConfig,
    scope: StatsScope,
  ) {
    const t = thresholds;
    const g = (n: string) => scope.gauge(n);
    const rem = (n: string) => (t.trackRemaining ? scope.gauge(n) : undefined);
    this.connections = new Resource(() => t.maxConnections, g('cx_open'), rem('remaining_cx'));
    this.pendingRequests = new Resource(
      () => t.maxPendingRequests,
      g('rq_pending_open'),
      rem('remaining_pending'),
    );
    this.requests = new Resource(() => t.maxRequests, g('rq_open'), rem('remaining_rq'));
    this.connectionPools = new Resource(
      () => t.maxConnectionPools,
      g('cx_pool_open'),
      rem('remaining_cx_pools'),
    );
    const budget = t.retryBudget;
    // With a retry budget the limit follows the load: a share of active + pending requests, never below the floor.
    const retryLimit = budget
      ? () =>
          Math.max(
            budget.minRetryConcurrency,
            Math.floor(((this.requests.count + this.pendingRequests.count) * budget.budgetPercent) / 100),
          )
      : () => t.maxRetries;
    this.retries = new Resource(retryLimit, g('rq_retry_open'), rem('remaining_retries'));
  }
}
