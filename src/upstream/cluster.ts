// A cluster at run time: its hosts (static or from DNS), priority levels,
// load balancer, connection pools and stats.

import dns from 'node:dns';
import net from 'node:net';
import { logger } from '../common/logger.js';
import { timerMs } from '../common/timers.js';
import type { StatsScope } from '../stats/store.js';
import type { ClusterConfig, DnsLookupFamily } from './cluster-config.js';
import { ConnPoolSet } from './conn-pool.js';
import { Host } from './host.js';
import { LeastRequestLoadBalancer } from './lb/least-request.js';
import type { LoadBalancer, LoadBalancerContext } from './lb/load-balancer.js';
import { MaglevLoadBalancer } from './lb/maglev.js';
import { RandomLoadBalancer } from './lb/random.js';
import { RingHashLoadBalancer } from './lb/ring-hash.js';
import { RoundRobinLoadBalancer } from './lb/round-robin.js';

const log = logger('upstream');

/** Envoy's default healthy_panic_threshold: below 50% healthy, a priority routes to all its hosts. */
const PANIC_THRESHOLD = 50;

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
  readonly lb_healthy_panic;
  readonly upstream_cx_none_healthy;
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
    this.lb_healthy_panic = c('lb_healthy_panic');
    this.upstream_cx_none_healthy = c('upstream_cx_none_healthy');
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
  readonly stats: ClusterStats;
  readonly pools: ConnPoolSet;
  /** Resolves once the cluster has completed its first host discovery (Envoy's warming). */
  readonly initialized: Promise<void>;
  private markInitialized!: () => void;

  constructor(
    readonly config: ClusterConfig,
    scope: StatsScope,
  ) {
    this.stats = new ClusterStats(scope);
    this.lb = makeLoadBalancer(config);
    this.pools = new ConnPoolSet(this);
    this.initialized = new Promise((resolve) => {
      this.markInitialized = resolve;
    });
    if (config.type === 'STATIC') {
      this.setHosts(
        config.localities.flatMap((l) =>
          l.endpoints.map(
            (e) => new Host(e.address.host, e.address.port, e.weight, l.priority, e.hostname, e.healthStatus),
          ),
        ),
      );
      this.stats.update_success.inc();
      this.markInitialized();
    } else {
      void this.resolveDns();
    }
  }

  get name(): string {
    return this.config.name;
  }

  allHosts(): Host[] {
    return this.hostsByPriority.flat();
  }

  private setHosts(hosts: Host[]): void {
    const byP: Host[][] = [];
    for (const h of hosts) (byP[h.priority] ??= []).push(h);
    for (let i = 0; i < byP.length; i++) byP[i] ??= [];
    this.hostsByPriority = byP;
    this.healthyByPriority = byP.map((hs) => hs.filter((h) => h.healthy));
    this.stats.membership_total.set(hosts.length);
    this.stats.membership_healthy.set(this.healthyByPriority.reduce((a, h) => a + h.length, 0));
    this.computePriorityLoad();
    this.pools.retainOnly(new Set(hosts.map((h) => h.addressString)));
  }

  /**
   * A host's health flags changed (active health check, outlier detection): rebuild the healthy
   * sets and priority load. The host arrays are replaced, so load balancers rebuild their state.
   */
  refreshHealth(): void {
    this.healthyByPriority = this.hostsByPriority.map((hs) => hs.filter((h) => h.healthy));
    this.stats.membership_healthy.set(this.healthyByPriority.reduce((a, h) => a + h.length, 0));
    this.computePriorityLoad();
  }

  /** Envoy's priority load: each level takes healthy% x overprovisioning, in order, until 100%. */
  private computePriorityLoad(): void {
    const factor = this.config.overprovisioningFactor;
    const health = this.hostsByPriority.map((hs, p) =>
      hs.length === 0
        ? 0
        : Math.min(100, Math.floor((this.healthyByPriority[p]!.length * factor) / hs.length)),
    );
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
    if ((healthy.length * 100) / all.length < PANIC_THRESHOLD) {
      this.stats.lb_healthy_panic.inc();
      return this.lb.chooseHost(all, ctx);
    }
    return this.lb.chooseHost(healthy, ctx);
  }

  private async resolveDns(): Promise<void> {
    const family = this.config.dnsLookupFamily;
    const results: Host[] = [];
    let ok = true;
    for (const loc of this.config.localities) {
      for (const e of loc.endpoints) {
        try {
          const addrs = await lookup(e.address.host, family);
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
    if (ok || this.hostsByPriority.length === 0 || results.length > 0) this.setHosts(results);
    this.markInitialized();
    this.dnsTimer = setTimeout(() => void this.resolveDns(), timerMs(this.config.dnsRefreshRateMs));
    this.dnsTimer.unref();
  }

  destroy(): void {
    if (this.dnsTimer) clearTimeout(this.dnsTimer);
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
