// A cluster at run time: its hosts (static or from DNS), priority levels,
// load balancer, connection pools and stats.

import dns from 'node:dns';
import net from 'node:net';
import { logger } from '../common/logger.js';
import { timerMs } from '../common/timers.js';
import type { StatsScope } from '../stats/store.js';
import type { ClusterConfig, DnsLookupFamily, LocalityEndpointsConfig } from './cluster-config.js';
import { ConnPoolSet } from './conn-pool.js';
import type { HealthChecker } from './health_checkers/base.js';
import { createHealthChecker } from './health_checkers/factory.js';
import { HealthFlag, Host, type OutlierResult } from './host.js';
import { LeastRequestLoadBalancer } from './lb/least-request.js';
import type { LoadBalancer, LoadBalancerContext } from './lb/load-balancer.js';
import { MaglevLoadBalancer } from './lb/maglev.js';
import { RandomLoadBalancer } from './lb/random.js';
import { RingHashLoadBalancer } from './lb/ring-hash.js';
import { RoundRobinLoadBalancer } from './lb/round-robin.js';
import { OutlierDetector } from './outlier-detection.js';
import { ResourceManager, type ResourcePriority } from './resource-manager.js';

const log = logger('upstream');

/** The health flags active health checking owns (what the main process shares with workers). */
const ACTIVE_HC_BITS =
  HealthFlag.FAILED_ACTIVE_HC |
  HealthFlag.DEGRADED_ACTIVE_HC |
  HealthFlag.PENDING_ACTIVE_HC |
  HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL |
  HealthFlag.ACTIVE_HC_TIMEOUT |
  // Outlier detection also runs in the main process only (fed by the workers' results).
  HealthFlag.FAILED_OUTLIER_CHECK;

export interface RemoteHealth {
  reportImmediateFail(cluster: string, address: string): void;
  /** Outlier detection inputs, for the main process's detector. */
  reportOutlier(cluster: string, address: string, event: OutlierEvent): void;
  /** DNS clusters: the hosts the main process resolved last, if it has. */
  resolvedHosts(cluster: string): HostSnapshot[] | undefined;
}

/** One outlier-detection input: an HTTP status, a result, or a response time. */
export type OutlierEvent =
  | ['code', number]
  | ['result', OutlierResult, number | undefined]
  | ['time', number];

/** A host as the main process sends DNS results to workers. */
export interface HostSnapshot {
  address: string;
  port: number;
  weight: number;
  priority: number;
  hostname: string;
  healthStatus: Host['healthStatus'];
}

export class ClusterStats {
  readonly upstream_rq_total;
  readonly upstream_rq_completed;
  readonly upstream_rq_active;
  readonly upstream_rq_timeout;
  readonly upstream_cx_total;
  readonly upstream_cx_active;
  readonly upstream_cx_connect_fail;
  readonly upstream_cx_connect_timeout;
  readonly upstream_cx_http1_total;
  readonly upstream_cx_http2_total;
  readonly upstream_cx_idle_timeout;
  readonly upstream_cx_destroy_remote_with_active_rq;
  readonly upstream_rq_2xx;
  readonly upstream_rq_3xx;
  readonly upstream_rq_4xx;
  readonly upstream_rq_5xx;
  readonly membership_total;
  readonly membership_healthy;
  readonly update_success;
  readonly update_failure;
  readonly init_fetch_timeout;
  readonly lb_healthy_panic;
  readonly upstream_cx_none_healthy;
  readonly upstream_rq_pending_total;
  readonly upstream_rq_pending_overflow;
  readonly upstream_rq_pending_failure_eject;
  readonly upstream_cx_overflow;
  readonly upstream_rq_retry;
  readonly upstream_rq_retry_success;
  readonly upstream_rq_retry_overflow;
  readonly upstream_rq_retry_limit_exceeded;
  readonly upstream_rq_retry_backoff_exponential;
  readonly upstream_rq_per_try_timeout;
  readonly upstream_rq_per_try_idle_timeout;
  readonly upstream_rq_cancelled;
  readonly upstream_rq_rx_reset;
  readonly upstream_rq_tx_reset;
  readonly retry_or_shadow_abandoned;
  readonly upstream_cx_destroy_local_with_active_rq;
  readonly upstream_cx_destroy_with_active_rq;
  readonly upstream_rq_maintenance_mode;
  readonly upstream_rq_pending_active;
  readonly upstream_rq_time;
  readonly upstream_cx_connect_ms;
  readonly upstream_cx_length_ms;

  constructor(readonly scope: StatsScope) {
    const c = (n: string) => scope.counter(n);
    const g = (n: string) => scope.gauge(n);
    this.upstream_rq_total = c('upstream_rq_total');
    this.upstream_rq_completed = c('upstream_rq_completed');
    this.upstream_rq_active = g('upstream_rq_active');
    this.upstream_rq_timeout = c('upstream_rq_timeout');
    this.upstream_cx_total = c('upstream_cx_total');
    this.upstream_cx_active = g('upstream_cx_active');
    this.upstream_cx_connect_fail = c('upstream_cx_connect_fail');
    this.upstream_cx_connect_timeout = c('upstream_cx_connect_timeout');
    this.upstream_cx_http1_total = c('upstream_cx_http1_total');
    this.upstream_cx_http2_total = c('upstream_cx_http2_total');
    this.upstream_cx_idle_timeout = c('upstream_cx_idle_timeout');
    this.upstream_cx_destroy_remote_with_active_rq = c('upstream_cx_destroy_remote_with_active_rq');
    this.upstream_rq_2xx = c('upstream_rq_2xx');
    this.upstream_rq_3xx = c('upstream_rq_3xx');
    this.upstream_rq_4xx = c('upstream_rq_4xx');
    this.upstream_rq_5xx = c('upstream_rq_5xx');
    this.membership_total = g('membership_total');
    this.membership_healthy = g('membership_healthy');
    this.update_success = c('update_success');
    this.update_failure = c('update_failure');
    this.init_fetch_timeout = c('init_fetch_timeout');
    this.lb_healthy_panic = c('lb_healthy_panic');
    this.upstream_cx_none_healthy = c('upstream_cx_none_healthy');
    this.upstream_rq_pending_total = c('upstream_rq_pending_total');
    this.upstream_rq_pending_overflow = c('upstream_rq_pending_overflow');
    this.upstream_rq_pending_failure_eject = c('upstream_rq_pending_failure_eject');
    this.upstream_cx_overflow = c('upstream_cx_overflow');
    this.upstream_rq_retry = c('upstream_rq_retry');
    this.upstream_rq_retry_success = c('upstream_rq_retry_success');
    this.upstream_rq_retry_overflow = c('upstream_rq_retry_overflow');
    this.upstream_rq_retry_limit_exceeded = c('upstream_rq_retry_limit_exceeded');
    this.upstream_rq_retry_backoff_exponential = c('upstream_rq_retry_backoff_exponential');
    this.upstream_rq_per_try_timeout = c('upstream_rq_per_try_timeout');
    this.upstream_rq_per_try_idle_timeout = c('upstream_rq_per_try_idle_timeout');
    this.upstream_rq_cancelled = c('upstream_rq_cancelled');
    this.upstream_rq_rx_reset = c('upstream_rq_rx_reset');
    this.upstream_rq_tx_reset = c('upstream_rq_tx_reset');
    this.retry_or_shadow_abandoned = c('retry_or_shadow_abandoned');
    this.upstream_cx_destroy_local_with_active_rq = c('upstream_cx_destroy_local_with_active_rq');
    this.upstream_cx_destroy_with_active_rq = c('upstream_cx_destroy_with_active_rq');
    this.upstream_rq_maintenance_mode = c('upstream_rq_maintenance_mode');
    this.upstream_rq_pending_active = g('upstream_rq_pending_active');
    this.upstream_rq_time = scope.histogram('upstream_rq_time');
    this.upstream_cx_connect_ms = scope.histogram('upstream_cx_connect_ms');
    this.upstream_cx_length_ms = scope.histogram('upstream_cx_length_ms');
  }

  /** upstream_rq_<code> counters are made on first use of each code, then cached. */
  private readonly byCode = new Map<number, import('../stats/store.js').Counter>();
  responseCode(code: number): void {
    let ctr = this.byCode.get(code);
    if (!ctr) this.byCode.set(code, (ctr = this.scope.counter(`upstream_rq_${code}`)));
    ctr.inc();
    if (code >= 500) this.upstream_rq_5xx.inc();
    else if (code >= 400) this.upstream_rq_4xx.inc();
    else if (code >= 300) this.upstream_rq_3xx.inc();
    else if (code >= 200) this.upstream_rq_2xx.inc();
  }
}

export class Cluster {
  /** Hosts by priority; each array is replaced whole on change (LBs key state on identity). */
  private hostsByPriority: Host[][] = [];
  private healthyByPriority: Host[][] = [];
  private priorityLoad: number[] = [];
  private readonly lb: LoadBalancer;
  private dnsTimer: NodeJS.Timeout | undefined;
  /** Hosts that are neither healthy nor excluded count in panic and priority-load denominators. */
  private eligibleCountByPriority: number[] = [];
  readonly healthChecker: HealthChecker | undefined;
  readonly outlierDetector: OutlierDetector | undefined;
  private destroyed = false;
  readonly stats: ClusterStats;
  readonly pools: ConnPoolSet;
  /** Circuit breakers, per routing priority. */
  readonly resources: Record<ResourcePriority, ResourceManager>;
  /** Resolves once the cluster has completed its first host discovery (Envoy's warming). */
  readonly initialized: Promise<void>;
  private markInitialized!: () => void;

  constructor(
    readonly config: ClusterConfig,
    scope: StatsScope,
    /**
     * In a worker process: active health checks run in the main process, whose verdicts arrive
     * through applyRemoteHealth(); `reportImmediateFail` tells it what routed responses said.
     */
    private readonly remote?: RemoteHealth,
  ) {
    this.stats = new ClusterStats(scope);
    this.overprovisioning = config.overprovisioningFactor;
    const cb = config.circuitBreakers;
    this.resources = {
      DEFAULT: new ResourceManager(cb.DEFAULT, scope.scope('circuit_breakers.default.')),
      HIGH: new ResourceManager(cb.HIGH, scope.scope('circuit_breakers.high.')),
    };
    this.lb = makeLoadBalancer(config);
    this.pools = new ConnPoolSet(this);
    this.initialized = new Promise((resolve) => {
      this.markInitialized = resolve;
    });
    if (config.outlierDetection && !remote)
      this.outlierDetector = new OutlierDetector(config.outlierDetection, scope, () => this.refreshHealth());
    if (config.healthCheck && !remote) {
      const hc = createHealthChecker(this, config.healthCheck, scope);
      hc.addHostCheckCompleteCb((host, transition, passed) => {
        if (passed) this.outlierDetector?.onActiveHealthCheckPassed(host);
        if (transition === 'changed') this.refreshHealth();
      });
      this.healthChecker = hc;
    }
    if (config.type === 'STATIC') {
      this.setHosts(
        config.localities.flatMap((l) =>
          l.endpoints.map(
            (e) => new Host(e.address.host, e.address.port, e.weight, l.priority, e.hostname, e.healthStatus),
          ),
        ),
      );
      this.stats.update_success.inc();
      this.finishInitialization();
    } else if (config.type === 'EDS') {
      // Warming: the cluster waits for its first ClusterLoadAssignment, up to initial_fetch_timeout.
      const t = config.eds?.source.initialFetchTimeoutMs ?? 15000;
      if (t > 0) {
        this.edsTimer = setTimeout(() => {
          this.stats.init_fetch_timeout.inc();
          this.finishInitialization();
        }, timerMs(t));
        this.edsTimer.unref();
      }
    } else if (remote) {
      // A worker: DNS is resolved once, by the main process, which sends each result.
      const hosts = remote.resolvedHosts(config.name);
      if (hosts) this.applyResolvedHosts(hosts);
    } else {
      void this.resolveDns();
    }
  }

  /** Worker processes: the main process's DNS result for this cluster. */
  applyResolvedHosts(hosts: HostSnapshot[]): void {
    if (this.destroyed) return;
    this.setHosts(
      hosts.map((h) => new Host(h.address, h.port, h.weight, h.priority, h.hostname, h.healthStatus)),
    );
    this.stats.update_success.inc();
    this.finishInitialization();
  }

  /** The main process: told of every DNS result, to send to the workers. */
  onResolvedHosts: ((hosts: HostSnapshot[]) => void) | undefined;

  /** The current hosts, as a DNS result is sent to workers. */
  hostSnapshot(): HostSnapshot[] {
    return this.allHosts().map((h) => ({
      address: h.address,
      port: h.port,
      weight: h.weight,
      priority: h.priority,
      hostname: h.hostname,
      healthStatus: h.healthStatus,
    }));
  }

  private edsTimer: NodeJS.Timeout | undefined;
  private dnsFailures = 0;
  /** The overprovisioning factor in force (an EDS assignment may change it). */
  private overprovisioning: number;

  /** EDS: a new ClusterLoadAssignment. Hosts still present keep their state. */
  updateAssignment(localities: LocalityEndpointsConfig[], overprovisioningFactor: number | undefined): void {
    if (this.destroyed) return;
    this.overprovisioning = overprovisioningFactor ?? this.config.overprovisioningFactor;
    this.setHosts(
      localities.flatMap((l) =>
        l.endpoints.map(
          (e) => new Host(e.address.host, e.address.port, e.weight, l.priority, e.hostname, e.healthStatus),
        ),
      ),
    );
    this.stats.update_success.inc();
    clearTimeout(this.edsTimer);
    this.finishInitialization();
  }

  /**
   * The cluster was replaced or removed: it takes no new requests; requests in flight finish on
   * its connections, which then close (Envoy drains the old cluster's pools).
   */
  retire(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.edsTimer);
    if (this.dnsTimer) clearTimeout(this.dnsTimer);
    this.healthChecker?.destroy();
    this.outlierDetector?.destroy();
    this.pools.drain();
  }

  get name(): string {
    return this.config.name;
  }

  allHosts(): Host[] {
    return this.hostsByPriority.flat();
  }

  /** Whether the cluster ever opened an upstream connection (health checks slow down until it has). */
  hadTraffic(): boolean {
    return this.stats.upstream_cx_total.value > 0;
  }

  /** Warm once the first discovery is done and, with health checks, every host had its first check. */
  private initializing = false;
  private finishInitialization(): void {
    if (this.initializing) return;
    this.initializing = true;
    const hc = this.healthChecker;
    if (!hc) {
      this.markInitialized();
      return;
    }
    void hc.start(this.allHosts()).then(() => this.markInitialized());
  }

  private setHosts(hosts: Host[]): void {
    // A host that is still discovered keeps its object, and with it its health and outlier state.
    const key = (h: Host) => `${h.addressString}|${h.priority}|${h.weight}|${h.hostname}|${h.healthStatus}`;
    const previous = new Map(this.allHosts().map((h) => [key(h), h]));
    const added: Host[] = [];
    hosts = hosts.map((h) => {
      const k = key(h);
      const old = previous.get(k);
      if (old) {
        previous.delete(k);
        return old;
      }
      added.push(h);
      return h;
    });
    const removed = [...previous.values()];
    if (this.remote && (this.config.healthCheck || this.config.outlierDetection)) {
      // The main process's verdict if it has one; until then, unchecked (as a new host is).
      const checked = this.config.healthCheck !== undefined;
      for (const h of added) {
        const bits = this.remoteBits.get(h.addressString);
        h.healthFlags =
          (h.healthFlags & ~ACTIVE_HC_BITS) | (bits ?? (checked ? HealthFlag.FAILED_ACTIVE_HC : 0));
        if (checked) {
          const report = this.remote.reportImmediateFail;
          h.healthChecker = { setUnhealthy: () => report(this.name, h.addressString) };
        }
      }
    } else if (this.healthChecker) {
      // With active health checking a host is unhealthy until its first check passes.
      const dynamic = this.config.type !== 'STATIC';
      for (const h of added) {
        h.healthFlags |= HealthFlag.FAILED_ACTIVE_HC;
        if (dynamic && this.config.ignoreNewHostsUntilFirstHc) h.healthFlags |= HealthFlag.PENDING_ACTIVE_HC;
      }
    }
    const byP: Host[][] = [];
    for (const h of hosts) (byP[h.priority] ??= []).push(h);
    for (let i = 0; i < byP.length; i++) byP[i] ??= [];
    this.hostsByPriority = byP;
    this.stats.membership_total.set(hosts.length);
    this.outlierDetector?.removeHosts(removed);
    this.outlierDetector?.addHosts(added);
    const remote = this.remote;
    if (remote && this.config.outlierDetection) {
      // A worker reports what it sees to the main process, whose detector ejects for everyone.
      const name = this.name;
      for (const h of added) {
        const a = h.addressString;
        h.outlier = {
          putHttpResponseCode: (code) => remote.reportOutlier(name, a, ['code', code]),
          putResult: (r, code) => remote.reportOutlier(name, a, ['result', r, code]),
          putResponseTimeMs: (ms) => remote.reportOutlier(name, a, ['time', ms]),
        };
      }
    }
    // Before the first discovery completes, the checker starts with the whole set instead.
    if (this.initializing) this.healthChecker?.onMembershipChange(added, removed);
    this.refreshHealth();
    this.pools.retainOnly(new Set(hosts.map((h) => h.addressString)));
  }

  /**
   * A host's health flags changed (active health check, outlier detection): rebuild the healthy
   * sets and priority load. The host arrays are replaced, so load balancers rebuild their state.
   */
  /** Active health-check verdicts from the main process (worker processes). */
  private readonly remoteBits = new Map<string, number>();
  applyRemoteHealth(address: string, bits: number): void {
    this.remoteBits.set(address, bits);
    let changed = false;
    for (const h of this.allHosts()) {
      if (h.addressString !== address) continue;
      const next = (h.healthFlags & ~ACTIVE_HC_BITS) | bits;
      if (next !== h.healthFlags) {
        h.healthFlags = next;
        changed = true;
      }
    }
    if (changed) this.refreshHealth();
  }

  /** The main process: told of every change of a host's active health-check bits. */
  onActiveHealthChange: ((address: string, bits: number) => void) | undefined;
  private readonly reportedBits = new WeakMap<Host, number>();

  /** The active health-check bits of every host, as the main process hands them to a new worker. */
  activeHealthSnapshot(): Array<[string, number]> {
    return this.allHosts().map((h) => [h.addressString, h.healthFlags & ACTIVE_HC_BITS]);
  }

  refreshHealth(): void {
    if (this.destroyed) return;
    const notify = this.onActiveHealthChange;
    if (notify) {
      for (const h of this.allHosts()) {
        const bits = h.healthFlags & ACTIVE_HC_BITS;
        if (this.reportedBits.get(h) !== bits) {
          this.reportedBits.set(h, bits);
          notify(h.addressString, bits);
        }
      }
    }
    this.healthyByPriority = this.hostsByPriority.map((hs) => hs.filter((h) => h.healthy));
    this.eligibleCountByPriority = this.hostsByPriority.map((hs) => hs.filter((h) => !h.excluded).length);
    this.stats.membership_healthy.set(this.healthyByPriority.reduce((a, h) => a + h.length, 0));
    this.computePriorityLoad();
  }

  /** Envoy's priority load: each level takes healthy% x overprovisioning, in order, until 100%. */
  private computePriorityLoad(): void {
    const factor = this.overprovisioning;
    // Excluded hosts count neither as healthy nor in the total.
    const health = this.hostsByPriority.map((_hs, p) => {
      const n = this.eligibleCountByPriority[p] ?? 0;
      return n === 0 ? 0 : Math.min(100, Math.floor((this.healthyByPriority[p]!.length * factor) / n));
    });
    const total = health.reduce((a, b) => a + b, 0);
    const load: number[] = [];
    if (total === 0) {
      // Nothing healthy anywhere: all load on the first level that has hosts (it will panic).
      const first = this.hostsByPriority.findIndex((hs) => hs.length > 0);
      for (let p = 0; p < this.hostsByPriority.length; p++) load.push(p === first ? 100 : 0);
    } else {
      let remaining = 100;
      for (const h of health) {
        // Normalised when the levels together are below 100% healthy.
        const share = total < 100 ? Math.round((h * 100) / total) : h;
        const l = Math.min(remaining, share);
        load.push(l);
        remaining -= l;
      }
      if (remaining > 0) {
        const last = health.findLastIndex((h) => h > 0);
        load[last] = (load[last] ?? 0) + remaining;
      }
    }
    this.priorityLoad = load;
  }

  chooseHost(ctx?: LoadBalancerContext): Host | undefined {
    const levels = this.hostsByPriority.length;
    if (levels === 0) return undefined;
    let p = 0;
    if (levels > 1) {
      let x = Math.random() * 100;
      for (p = 0; p < levels - 1; p++) {
        x -= this.priorityLoad[p]!;
        if (x < 0) break;
      }
    }
    const all = this.hostsByPriority[p]!;
    if (all.length === 0) return undefined;
    const healthy = this.healthyByPriority[p]!;
    const eligible = this.eligibleCountByPriority[p] ?? 0;
    // Panic: too few healthy hosts, so all of them (excluded ones too) take traffic.
    if ((eligible === 0 ? 0 : (healthy.length * 100) / eligible) < this.config.healthyPanicThreshold) {
      this.stats.lb_healthy_panic.inc();
      return this.lb.chooseHost(all, ctx);
    }
    return this.lb.chooseHost(healthy, ctx);
  }

  private async resolveDns(): Promise<void> {
    const family = this.config.dnsLookupFamily;
    const results: Host[] = [];
    let ok = true;
    let ttlMs: number | undefined;
    const respectTtl = this.config.respectDnsTtl;
    for (const loc of this.config.localities) {
      for (const e of loc.endpoints) {
        try {
          const r = respectTtl ? await resolveWithTtl(e.address.host, family) : undefined;
          const addrs = r?.addrs ?? (await lookup(e.address.host, family));
          if (r?.ttlMs !== undefined) ttlMs = ttlMs === undefined ? r.ttlMs : Math.min(ttlMs, r.ttlMs);
          const chosen = this.config.type === 'LOGICAL_DNS' ? addrs.slice(0, 1) : addrs;
          for (const a of chosen)
            results.push(
              new Host(
                a,
                e.address.port,
                e.weight,
                loc.priority,
                e.hostname || e.address.host,
                e.healthStatus,
              ),
            );
        } catch (err) {
          ok = false;
          log.warn(
            `cluster ${this.name}: DNS resolution of ${e.address.host} failed: ${(err as Error).message}`,
          );
        }
      }
    }
    if (ok) this.stats.update_success.inc();
    else this.stats.update_failure.inc();
    // Keep the previous hosts of a name that failed to resolve this round (Envoy keeps the last good set).
    if (ok || this.hostsByPriority.length === 0 || results.length > 0) {
      this.setHosts(results);
      this.onResolvedHosts?.(this.hostSnapshot());
    }
    this.finishInitialization();
    // Next resolution: the records' TTL (respect_dns_ttl), the failure back-off after a failure
    // (dns_failure_refresh_rate: jittered, growing from base to max), else dns_refresh_rate.
    let next = this.config.dnsRefreshRateMs;
    const failure = this.config.dnsFailureRefresh;
    if (!ok && failure) {
      this.dnsFailures++;
      const ceiling = Math.min(failure.maxMs, failure.baseMs * 2 ** (this.dnsFailures - 1));
      next = failure.baseMs + Math.random() * Math.max(0, ceiling - failure.baseMs);
    } else if (ok) {
      this.dnsFailures = 0;
      if (ttlMs !== undefined && ttlMs > 0) next = ttlMs;
    }
    this.dnsTimer = setTimeout(() => void this.resolveDns(), timerMs(next));
    this.dnsTimer.unref();
  }

  destroy(): void {
    this.destroyed = true;
    clearTimeout(this.edsTimer);
    if (this.dnsTimer) clearTimeout(this.dnsTimer);
    this.healthChecker?.destroy();
    this.outlierDetector?.destroy();
    this.pools.destroy();
  }
}

function makeLoadBalancer(c: ClusterConfig): LoadBalancer {
  switch (c.lbPolicy) {
    case 'RANDOM':
      return new RandomLoadBalancer();
    case 'LEAST_REQUEST':
      return new LeastRequestLoadBalancer(c.leastRequestChoiceCount);
    case 'RING_HASH':
      return new RingHashLoadBalancer(c.ringHash);
    case 'MAGLEV':
      return new MaglevLoadBalancer(c.maglevTableSize);
    default:
      return new RoundRobinLoadBalancer();
  }
}

/**
 * respect_dns_ttl: resolve through DNS (not the hosts file) to learn the records' TTL, as Envoy's
 * c-ares resolver does. A name DNS does not know (e.g. only in /etc/hosts) falls back to lookup().
 */
async function resolveWithTtl(
  host: string,
  family: DnsLookupFamily,
): Promise<{ addrs: string[]; ttlMs: number } | undefined> {
  if (net.isIP(host)) return undefined;
  const v4 = () => dns.promises.resolve4(host, { ttl: true }).catch(() => []);
  const v6 = () => dns.promises.resolve6(host, { ttl: true }).catch(() => []);
  let records: dns.RecordWithTtl[] = [];
  if (family === 'V4_ONLY') records = await v4();
  else if (family === 'V6_ONLY') records = await v6();
  else if (family === 'V4_PREFERRED') {
    records = await v4();
    if (!records.length) records = await v6();
  } else if (family === 'ALL') records = [...(await v4()), ...(await v6())];
  else {
    records = await v6();
    if (!records.length) records = await v4();
  }
  if (!records.length) return undefined;
  return {
    addrs: [...new Set(records.map((r) => r.address))],
    ttlMs: Math.min(...records.map((r) => r.ttl)) * 1000,
  };
}

async function lookup(host: string, family: DnsLookupFamily): Promise<string[]> {
  if (net.isIP(host)) return [host];
  const opts: dns.LookupAllOptions = { all: true, verbatim: true };
  if (family === 'V4_ONLY') opts.family = 4;
  else if (family === 'V6_ONLY') opts.family = 6;
  const res = await dns.promises.lookup(host, opts);
  let addrs = res;
  if (family === 'AUTO' || family === 'V6_ONLY') {
    // AUTO: IPv6 if any, else IPv4.
    const v6 = res.filter((a) => a.family === 6);
    if (v6.length) addrs = v6;
  } else if (family === 'V4_PREFERRED') {
    const v4 = res.filter((a) => a.family === 4);
    if (v4.length) addrs = v4;
  }
  const out = [...new Set(addrs.map((a) => a.address))];
  if (out.length === 0) throw new Error('no addresses');
  return out;
}
