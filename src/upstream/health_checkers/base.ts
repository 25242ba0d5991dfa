// What every active health checker shares, after Envoy's HealthCheckerImplBase:
// one session per host, consecutive-result thresholds, the interval rules
// (no-traffic, unhealthy and edge intervals, jitter), the health flags a
// check sets or clears, and the `health_check.*` stats. HTTP, TCP and gRPC
// checkers only say how one check is made and what its answer means.
//
// Checks run in Herald's main process on unref'd timers: they never keep the
// process alive, and destroy() stops them and closes their connections.
import { logger } from '../../common/logger.js';
import { timerMs } from '../../common/timers.js';
import type { Counter, Gauge, StatsScope } from '../../stats/store.js';
import type { ClusterConfig } from '../cluster-config.js';
import { type HealthCheckHostMonitor, HealthFlag, type Host } from '../host.js';
import type { HealthCheckConfig } from './config.js';

export const log = logger('hc');

/** Envoy's HealthCheckFailureType. ACTIVE and PASSIVE fail a host at once; NETWORK ones count. */
export type FailureType = 'ACTIVE' | 'PASSIVE' | 'NETWORK' | 'NETWORK_TIMEOUT';

/** Envoy's HealthTransition: whether a check changed the host's health, or is on the way to. */
export type HealthTransition = 'unchanged' | 'changed' | 'pending';

export type HostCheckCompleteCb = (host: Host, transition: HealthTransition, passed: boolean) => void;

/** What a checker needs of its cluster. */
export interface CheckedCluster {
  readonly name: string;
  readonly config: ClusterConfig;
  /** Whether the cluster ever opened an upstream connection (Envoy: upstream_cx_total used). */
  hadTraffic(): boolean;
}

export class HealthCheckerStats {
  readonly attempt: Counter;
  readonly success: Counter;
  readonly failure: Counter;
  readonly passive_failure: Counter;
  readonly network_failure: Counter;
  readonly verify_cluster: Counter;
  readonly healthy: Gauge;
  readonly degraded: Gauge;

  constructor(scope: StatsScope) {
    const s = scope.scope('health_check.');
    this.attempt = s.counter('attempt');
    this.success = s.counter('success');
    this.failure = s.counter('failure');
    this.passive_failure = s.counter('passive_failure');
    this.network_failure = s.counter('network_failure');
    this.verify_cluster = s.counter('verify_cluster');
    this.healthy = s.gauge('healthy');
    this.degraded = s.gauge('degraded');
  }
}

export abstract class HealthChecker {
  readonly stats: HealthCheckerStats;
  private readonly sessions = new Map<Host, ActiveHealthCheckSession>();
  private readonly callbacks: HostCheckCompleteCb[] = [];
  private destroyed = false;

  constructor(
    readonly cluster: CheckedCluster,
    readonly config: HealthCheckConfig,
    scope: StatsScope,
  ) {
    this.stats = new HealthCheckerStats(scope);
  }

  protected abstract makeSession(host: Host): ActiveHealthCheckSession;

  /** Starts checking these hosts; resolves when each has had its first check. */
  start(hosts: readonly Host[]): Promise<void> {
    return this.addHosts(hosts);
  }

  addHostCheckCompleteCb(cb: HostCheckCompleteCb): void {
    this.callbacks.push(cb);
  }

  /** Hosts joined or left the cluster. */
  onMembershipChange(added: readonly Host[], removed: readonly Host[]): void {
    if (this.destroyed) return;
    void this.addHosts(added);
    for (const h of removed) {
      const s = this.sessions.get(h);
      if (!s) continue;
      this.sessions.delete(h);
      s.destroy();
      if (h.healthChecker === s) h.healthChecker = undefined;
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.callbacks.length = 0;
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }

  private addHosts(hosts: readonly Host[]): Promise<void> {
    const firsts: Promise<void>[] = [];
    for (const h of hosts) {
      if (this.sessions.has(h)) continue;
      const s = this.makeSession(h);
      this.sessions.set(h, s);
      h.healthChecker = s;
      firsts.push(s.firstCheckDone);
      s.start();
    }
    return Promise.all(firsts).then(() => undefined);
  }

  runCallbacks(host: Host, transition: HealthTransition, passed: boolean): void {
    for (const cb of this.callbacks) cb(host, transition, passed);
  }

  /** The wait before the next check, by Envoy's rules. */
  interval(healthy: boolean, transition: HealthTransition): number {
    const c = this.config;
    let base: number;
    if (this.cluster.hadTraffic()) {
      if (!healthy) base = transition === 'pending' ? c.unhealthyEdgeIntervalMs : c.unhealthyIntervalMs;
      else base = transition === 'pending' ? c.healthyEdgeIntervalMs : c.intervalMs;
    } else {
      // A cluster that never had traffic is checked slowly until it gets some.
      base = healthy && transition !== 'pending' ? c.noTrafficHealthyIntervalMs : c.noTrafficIntervalMs;
    }
    return this.withJitter(base, c.intervalJitterMs);
  }

  withJitter(baseMs: number, jitterMs: number): number {
    let ms = Math.floor(baseMs);
    const percentMod = Math.floor((this.config.intervalJitterPercent * ms) / 100);
    if (percentMod > 0) ms += Math.floor(Math.random() * percentMod);
    if (jitterMs > 0) ms += Math.floor(Math.random() * jitterMs);
    return Math.max(1, ms);
  }

  /** The Host header / :authority of a check: configured, else the endpoint's hostname, else the cluster name. */
  hostnameFor(host: Host, configured: string): string {
    if (configured) return configured;
    if (host.hostname) return host.hostname;
    return this.cluster.name;
  }
}

/** One host's checks. Subclasses start a check in onInterval() and report it with succeed()/fail(). */
export abstract class ActiveHealthCheckSession implements HealthCheckHostMonitor {
  private numHealthy = 0;
  private numUnhealthy = 0;
  private firstCheck = true;
  private intervalTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  /** The check in flight, or 0. Answers to an older check (after its timeout) are ignored. */
  private inFlight = 0;
  private seq = 0;
  protected destroyed = false;
  readonly firstCheckDone: Promise<void>;
  private markFirstCheckDone!: () => void;

  constructor(
    protected readonly parent: HealthChecker,
    readonly host: Host,
  ) {
    this.firstCheckDone = new Promise((r) => {
      this.markFirstCheckDone = r;
    });
    if (!host.hasFlag(HealthFlag.FAILED_ACTIVE_HC)) parent.stats.healthy.inc();
    if (host.hasFlag(HealthFlag.DEGRADED_ACTIVE_HC)) parent.stats.degraded.inc();
  }

  /** Starts a check; `id` identifies it in succeed()/fail(). */
  protected abstract onInterval(id: number): void;
  /** The check in flight timed out: abandon it (close the connection or reset the stream). */
  protected abstract onTimeout(): void;
  /** Releases connections. */
  protected abstract onDestroy(): void;

  start(): void {
    const jitter = this.parent.config.initialJitterMs;
    if (jitter === 0) this.onIntervalBase();
    else this.arm(this.parent.withJitter(0, jitter));
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.intervalTimer);
    clearTimeout(this.timeoutTimer);
    if (!this.host.hasFlag(HealthFlag.FAILED_ACTIVE_HC)) this.parent.stats.healthy.dec();
    if (this.host.hasFlag(HealthFlag.DEGRADED_ACTIVE_HC)) this.parent.stats.degraded.dec();
    this.onDestroy();
    this.markFirstCheckDone();
  }

  /** A routed response carried x-envoy-immediate-health-check-fail. */
  setUnhealthy(_type: 'IMMEDIATE_HEALTH_CHECK_FAIL'): void {
    if (this.destroyed) return;
    this.host.healthFlags |= HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
    this.setUnhealthyState('PASSIVE', false);
  }

  private arm(ms: number): void {
    clearTimeout(this.intervalTimer);
    this.intervalTimer = setTimeout(() => this.onIntervalBase(), timerMs(ms));
    this.intervalTimer.unref();
  }

  private onIntervalBase(): void {
    if (this.destroyed) return;
    const id = ++this.seq;
    this.inFlight = id;
    this.parent.stats.attempt.inc();
    this.timeoutTimer = setTimeout(() => this.onTimeoutBase(), timerMs(this.parent.config.timeoutMs));
    this.timeoutTimer.unref();
    this.onInterval(id);
  }

  private onTimeoutBase(): void {
    if (this.destroyed || this.inFlight === 0) return;
    this.inFlight = 0;
    this.debug('hc failed: reason=timeout');
    this.onTimeout();
    this.handleFailure('NETWORK_TIMEOUT', false);
  }

  /** Whether `id` is the check in flight; if so it is now answered. */
  private take(id: number): boolean {
    if (this.destroyed || id !== this.inFlight) return false;
    this.inFlight = 0;
    clearTimeout(this.timeoutTimer);
    return true;
  }

  protected succeed(id: number, degraded = false): void {
    if (this.take(id)) this.handleSuccess(degraded);
  }

  protected fail(id: number, type: FailureType, reason: string, retriable = false): void {
    if (!this.take(id)) return;
    if (this.firstCheck || this.parent.config.alwaysLogHealthCheckFailures)
      log.info(`cluster ${this.parent.cluster.name}: hc failed for ${this.host.addressString}: ${reason}`);
    else this.debug(`hc failed: ${reason}`);
    this.handleFailure(type, retriable);
  }

  private handleSuccess(degraded: boolean): void {
    const host = this.host;
    const stats = this.parent.stats;
    this.numUnhealthy = 0;
    let t: HealthTransition = 'unchanged';
    if (host.hasFlag(HealthFlag.FAILED_ACTIVE_HC)) {
      // The very first answer counts alone: startup is faster, at a small cost in certainty.
      if (this.firstCheck || ++this.numHealthy === this.parent.config.healthyThreshold) {
        host.healthFlags &= ~(
          HealthFlag.FAILED_ACTIVE_HC |
          HealthFlag.ACTIVE_HC_TIMEOUT |
          HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL
        );
        stats.healthy.inc();
        t = 'changed';
        log.debug(`cluster ${this.parent.cluster.name}: ${host.addressString} is healthy`);
      } else {
        t = 'pending';
      }
    } else if (this.parent.config.alwaysLogHealthCheckSuccess) {
      log.info(`cluster ${this.parent.cluster.name}: hc passed for ${host.addressString}`);
    }
    t = this.clearPendingFlag(t);
    if (degraded !== host.hasFlag(HealthFlag.DEGRADED_ACTIVE_HC)) {
      if (degraded) {
        host.healthFlags |= HealthFlag.DEGRADED_ACTIVE_HC;
        stats.degraded.inc();
      } else {
        host.healthFlags &= ~HealthFlag.DEGRADED_ACTIVE_HC;
        stats.degraded.dec();
      }
      if (t === 'unchanged') t = 'changed';
    }
    stats.success.inc();
    this.firstCheck = false;
    this.parent.runCallbacks(host, t, true);
    this.markFirstCheckDone();
    this.arm(this.parent.interval(true, t));
  }

  private setUnhealthyState(type: FailureType, retriable: boolean): HealthTransition {
    const host = this.host;
    const stats = this.parent.stats;
    const network = type === 'NETWORK' || type === 'NETWORK_TIMEOUT';
    this.numHealthy = 0;
    let t: HealthTransition = 'unchanged';
    if (!host.hasFlag(HealthFlag.FAILED_ACTIVE_HC)) {
      // A wrong answer fails the host at once; a network failure or retriable status must repeat.
      if ((!network && !retriable) || ++this.numUnhealthy === this.parent.config.unhealthyThreshold) {
        host.healthFlags |= HealthFlag.FAILED_ACTIVE_HC;
        stats.healthy.dec();
        t = 'changed';
        log.debug(`cluster ${this.parent.cluster.name}: ${host.addressString} is unhealthy (${type})`);
      } else {
        t = 'pending';
      }
    }
    // A failed host toggles between timeout and failure as its failures change.
    if (type === 'NETWORK_TIMEOUT' && host.hasFlag(HealthFlag.FAILED_ACTIVE_HC))
      host.healthFlags |= HealthFlag.ACTIVE_HC_TIMEOUT;
    else host.healthFlags &= ~HealthFlag.ACTIVE_HC_TIMEOUT;
    t = this.clearPendingFlag(t);
    stats.failure.inc();
    if (network) stats.network_failure.inc();
    else if (type === 'PASSIVE') stats.passive_failure.inc();
    this.firstCheck = false;
    this.parent.runCallbacks(host, t, false);
    this.markFirstCheckDone();
    return t;
  }

  private handleFailure(type: FailureType, retriable: boolean): void {
    const t = this.setUnhealthyState(type, retriable);
    if (!this.destroyed) this.arm(this.parent.interval(false, t));
  }

  /** The first result ends PENDING_ACTIVE_HC; the cluster must rebuild its sets either way. */
  private clearPendingFlag(t: HealthTransition): HealthTransition {
    if (this.host.hasFlag(HealthFlag.PENDING_ACTIVE_HC)) {
      this.host.healthFlags &= ~HealthFlag.PENDING_ACTIVE_HC;
      return 'changed';
    }
    return t;
  }

  protected debug(msg: string): void {
    log.debug(`cluster ${this.parent.cluster.name} ${this.host.addressString}: ${msg}`);
  }
}
