// Outlier detection (Cluster.outlier_detection), after Envoy's Outlier::DetectorImpl.
//
// Each host gets a monitor that the router and pools report request outcomes into
// (`host.outlier`). Consecutive-error detectors (5xx, gateway failure, local-origin
// failure) eject as soon as their count is reached; success-rate and
// failure-percentage detectors run on the `interval` timer over the previous
// interval's requests. An ejected host carries FAILED_OUTLIER_CHECK for
// base_ejection_time x (times ejected, decaying while it behaves), capped by
// max_ejection_time, plus jitter; it is let back on the interval tick after that.
// No more than max_ejection_percent of the cluster's hosts are ejected at once.
import type { Reader } from '../config/reader.js';
import type { Counter, Gauge, StatsScope } from '../stats/store.js';
import { HealthFlag, type Host, type HostOutlierMonitor, type OutlierResult } from './host.js';

export interface OutlierDetectionConfig {
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionTimeJitterMs: number;
  maxEjectionPercent: number;
  alwaysEjectOneHost: boolean;
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  splitExternalLocalOriginErrors: boolean;
  enforcingConsecutive5xx: number;
  enforcingConsecutiveGatewayFailure: number;
  enforcingConsecutiveLocalOriginFailure: number;
  enforcingSuccessRate: number;
  enforcingLocalOriginSuccessRate: number;
  enforcingFailurePercentage: number;
  enforcingFailurePercentageLocalOrigin: number;
  successRateMinimumHosts: number;
  successRateRequestVolume: number;
  /** Divided by 1000 to get the factor (Envoy's encoding: 1900 = 1.9). */
  successRateStdevFactor: number;
  failurePercentageThreshold: number;
  failurePercentageMinimumHosts: number;
  failurePercentageRequestVolume: number;
  successfulActiveHealthCheckUnejectHost: boolean;
}

/** Envoy's defaults (outlier_detection_impl.h). */
export function compileOutlierDetection(r: Reader): OutlierDetectionConfig {
  if (r.has('monitors')) throw r.error('monitors', 'outlier detection monitor extensions are not supported');
  const baseEjectionTimeMs = r.durationMs('base_ejection_time', 30_000);
  const cfg: OutlierDetectionConfig = {
    intervalMs: r.durationMs('interval', 10_000),
    baseEjectionTimeMs,
    // Unset: the default (300 s) or base_ejection_time, whichever is larger.
    maxEjectionTimeMs: r.durationMs('max_ejection_time', Math.max(300_000, baseEjectionTimeMs)),
    maxEjectionTimeJitterMs: r.durationMs('max_ejection_time_jitter', 0),
    maxEjectionPercent: r.num('max_ejection_percent', 10),
    alwaysEjectOneHost: r.bool('always_eject_one_host'),
    consecutive5xx: r.num('consecutive_5xx', 5),
    consecutiveGatewayFailure: r.num('consecutive_gateway_failure', 5),
    consecutiveLocalOriginFailure: r.num('consecutive_local_origin_failure', 5),
    splitExternalLocalOriginErrors: r.bool('split_external_local_origin_errors'),
    enforcingConsecutive5xx: r.num('enforcing_consecutive_5xx', 100),
    enforcingConsecutiveGatewayFailure: r.num('enforcing_consecutive_gateway_failure', 0),
    enforcingConsecutiveLocalOriginFailure: r.num('enforcing_consecutive_local_origin_failure', 100),
    enforcingSuccessRate: r.num('enforcing_success_rate', 100),
    enforcingLocalOriginSuccessRate: r.num('enforcing_local_origin_success_rate', 100),
    enforcingFailurePercentage: r.num('enforcing_failure_percentage', 0),
    enforcingFailurePercentageLocalOrigin: r.num('enforcing_failure_percentage_local_origin', 0),
    successRateMinimumHosts: r.num('success_rate_minimum_hosts', 5),
    successRateRequestVolume: r.num('success_rate_request_volume', 100),
    successRateStdevFactor: r.num('success_rate_stdev_factor', 1900),
    failurePercentageThreshold: r.num('failure_percentage_threshold', 85),
    failurePercentageMinimumHosts: r.num('failure_percentage_minimum_hosts', 5),
    failurePercentageRequestVolume: r.num('failure_percentage_request_volume', 50),
    successfulActiveHealthCheckUnejectHost: r.bool('successful_active_health_check_uneject_host', true),
  };
  if (cfg.maxEjectionTimeMs < cfg.baseEjectionTimeMs)
    throw r.error('max_ejection_time', 'max_ejection_time cannot be smaller than base_ejection_time');
  return cfg;
}

/** Envoy's OutlierEjectionType, as used in stat names. */
type EjectionType =
  | 'consecutive_5xx'
  | 'consecutive_gateway_failure'
  | 'consecutive_local_origin_failure'
  | 'success_rate'
  | 'local_origin_success_rate'
  | 'failure_percentage'
  | 'local_origin_failure_percentage';

const EJECTION_TYPES: EjectionType[] = [
  'consecutive_5xx',
  'consecutive_gateway_failure',
  'consecutive_local_origin_failure',
  'success_rate',
  'local_origin_success_rate',
  'failure_percentage',
  'local_origin_failure_percentage',
];

export class OutlierDetectionStats {
  readonly ejections_active: Gauge;
  readonly ejections_total: Counter;
  readonly ejections_overflow: Counter;
  readonly ejections_enforced_total: Counter;
  /** Deprecated in Envoy, still counted there. */
  readonly ejections_consecutive_5xx: Counter;
  readonly ejections_success_rate: Counter;
  readonly detected = new Map<EjectionType, Counter>();
  readonly enforced = new Map<EjectionType, Counter>();

  constructor(scope: StatsScope) {
    const s = scope.scope('outlier_detection.');
    this.ejections_active = s.gauge('ejections_active');
    this.ejections_total = s.counter('ejections_total');
    this.ejections_overflow = s.counter('ejections_overflow');
    this.ejections_enforced_total = s.counter('ejections_enforced_total');
    this.ejections_consecutive_5xx = s.counter('ejections_consecutive_5xx');
    this.ejections_success_rate = s.counter('ejections_success_rate');
    for (const t of EJECTION_TYPES) {
      this.detected.set(t, s.counter(`ejections_detected_${t}`));
      this.enforced.set(t, s.counter(`ejections_enforced_${t}`));
    }
  }
}

/** Requests and successes in the interval being written, and in the last complete one. */
class SuccessRateMonitor {
  private cur = { success: 0, total: 0 };
  private last = { success: 0, total: 0 };
  /** The last computed rate, -1 when there was too little traffic. */
  successRate = -1;

  incTotal(): void {
    this.cur.total++;
  }
  incSuccess(): void {
    this.cur.success++;
  }
  swap(): void {
    this.last = this.cur;
    this.cur = { success: 0, total: 0 };
  }
  /** [success rate in percent, volume] of the last complete interval. */
  rateAndVolume(): [number, number] | undefined {
    if (this.last.total === 0) return undefined;
    return [(this.last.success * 100) / this.last.total, this.last.total];
  }
}

const isGatewayError = (code: number) => code === 502 || code === 503 || code === 504;

export class DetectorHostMonitor implements HostOutlierMonitor {
  numEjections = 0;
  /** Multiplies base_ejection_time; grows with each ejection, decays while the host behaves. */
  ejectTimeBackoff = 0;
  lastEjectionTime: number | undefined;
  lastUnejectionTime: number | undefined;
  jitterMs = 0;
  consecutive5xx = 0;
  consecutiveGatewayFailure = 0;
  consecutiveLocalOriginFailure = 0;
  readonly external = new SuccessRateMonitor();
  readonly localOrigin = new SuccessRateMonitor();
  detached = false;

  constructor(
    private readonly detector: OutlierDetector,
    readonly host: Host,
  ) {}

  putHttpResponseCode(code: number): void {
    this.external.incTotal();
    if (this.detached) return;
    const c = this.detector.config;
    if (code >= 500 && code < 600) {
      if (isGatewayError(code)) {
        if (++this.consecutiveGatewayFailure === c.consecutiveGatewayFailure)
          this.detector.onConsecutiveError(this, 'consecutive_gateway_failure');
      } else {
        this.consecutiveGatewayFailure = 0;
      }
      if (++this.consecutive5xx === c.consecutive5xx)
        this.detector.onConsecutiveError(this, 'consecutive_5xx');
    } else {
      this.external.incSuccess();
      this.consecutive5xx = 0;
      this.consecutiveGatewayFailure = 0;
    }
  }

  putResult(result: OutlierResult, code?: number): void {
    if (this.detector.config.splitExternalLocalOriginErrors) {
      switch (result) {
        case 'LOCAL_ORIGIN_CONNECT_SUCCESS':
        case 'LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL':
          this.localOriginNoFailure();
          break;
        case 'LOCAL_ORIGIN_TIMEOUT':
        case 'LOCAL_ORIGIN_CONNECT_FAILED':
          this.localOriginFailure();
          break;
        case 'EXT_ORIGIN_REQUEST_FAILED':
          this.putHttpResponseCode(503);
          break;
        case 'EXT_ORIGIN_REQUEST_SUCCESS':
          this.putHttpResponseCode(200);
          this.localOriginNoFailure();
          break;
      }
      return;
    }
    // Not split: every result counts as the HTTP status it stands for.
    const mapped = code ?? resultToHttpCode(result);
    if (mapped !== undefined) this.putHttpResponseCode(mapped);
  }

  putResponseTimeMs(_ms: number): void {
    // Envoy records nothing from response times yet either.
  }

  private localOriginFailure(): void {
    this.localOrigin.incTotal();
    if (this.detached) return;
    if (++this.consecutiveLocalOriginFailure === this.detector.config.consecutiveLocalOriginFailure)
      this.detector.onConsecutiveError(this, 'consecutive_local_origin_failure');
  }

  private localOriginNoFailure(): void {
    this.localOrigin.incTotal();
    this.localOrigin.incSuccess();
    this.consecutiveLocalOriginFailure = 0;
  }

  resetConsecutive(): void {
    this.consecutive5xx = 0;
    this.consecutiveGatewayFailure = 0;
    this.consecutiveLocalOriginFailure = 0;
  }
}

/** Envoy's resultToHttpCode: how a non-HTTP result counts when local and external errors are not split. */
function resultToHttpCode(result: OutlierResult): number | undefined {
  switch (result) {
    case 'EXT_ORIGIN_REQUEST_SUCCESS':
    case 'LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL':
      return 200;
    case 'LOCAL_ORIGIN_TIMEOUT':
      return 504;
    case 'LOCAL_ORIGIN_CONNECT_FAILED':
      return 503;
    case 'EXT_ORIGIN_REQUEST_FAILED':
      return 500;
    case 'LOCAL_ORIGIN_CONNECT_SUCCESS':
      // The connection worked; the HTTP answer that follows is reported on its own.
      return undefined;
  }
}

export class OutlierDetector {
  readonly stats: OutlierDetectionStats;
  private readonly monitors = new Map<Host, DetectorHostMonitor>();
  private timer: NodeJS.Timeout | undefined;
  private ejectionsActive = 0;

  constructor(
    readonly config: OutlierDetectionConfig,
    scope: StatsScope,
    /** A host was ejected or let back: the cluster rebuilds its healthy sets. */
    private readonly onHostChange: (host: Host) => void,
  ) {
    this.stats = new OutlierDetectionStats(scope);
    this.arm();
  }

  addHosts(hosts: readonly Host[]): void {
    for (const h of hosts) {
      if (this.monitors.has(h)) continue;
      const m = new DetectorHostMonitor(this, h);
      this.monitors.set(h, m);
      h.outlier = m;
    }
  }

  removeHosts(hosts: readonly Host[]): void {
    for (const h of hosts) {
      const m = this.monitors.get(h);
      if (!m) continue;
      if (h.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK)) this.setActive(this.ejectionsActive - 1);
      m.detached = true;
      this.monitors.delete(h);
    }
  }

  /** successful_active_health_check_uneject_host: a passing active check ends an ejection. */
  onActiveHealthCheckPassed(host: Host): void {
    if (!this.config.successfulActiveHealthCheckUnejectHost) return;
    if (host.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK) && !host.hasFlag(HealthFlag.FAILED_ACTIVE_HC))
      this.unejectHost(host);
  }

  destroy(): void {
    clearTimeout(this.timer);
    for (const m of this.monitors.values()) m.detached = true;
  }

  onConsecutiveError(m: DetectorHostMonitor, type: EjectionType): void {
    if (this.monitors.get(m.host) !== m || m.host.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK)) return;
    this.stats.detected.get(type)!.inc();
    this.ejectHost(m, type);
    // Start counting afresh, so a new run of errors is seen even without a success in between.
    if (type === 'consecutive_5xx') {
      this.stats.ejections_consecutive_5xx.inc();
      m.consecutive5xx = 0;
    } else if (type === 'consecutive_gateway_failure') m.consecutiveGatewayFailure = 0;
    else m.consecutiveLocalOriginFailure = 0;
  }

  private enforcing(type: EjectionType): number {
    const c = this.config;
    switch (type) {
      case 'consecutive_5xx':
        return c.enforcingConsecutive5xx;
      case 'consecutive_gateway_failure':
        return c.enforcingConsecutiveGatewayFailure;
      case 'consecutive_local_origin_failure':
        return c.enforcingConsecutiveLocalOriginFailure;
      case 'success_rate':
        return c.enforcingSuccessRate;
      case 'local_origin_success_rate':
        return c.enforcingLocalOriginSuccessRate;
      case 'failure_percentage':
        return c.enforcingFailurePercentage;
      case 'local_origin_failure_percentage':
        return c.enforcingFailurePercentageLocalOrigin;
    }
  }

  private ejectHost(m: DetectorHostMonitor, type: EjectionType): void {
    const c = this.config;
    const maxPercent = Math.min(100, c.maxEjectionPercent);
    const ejectedPercent = (100 * (this.ejectionsActive + 1)) / this.monitors.size;
    // Counted over the whole cluster, not per priority, as in Envoy.
    let shouldEject = ejectedPercent <= maxPercent;
    if (c.alwaysEjectOneHost) shouldEject ||= this.ejectionsActive === 0;
    if (!shouldEject) {
      this.stats.ejections_overflow.inc();
      return;
    }
    if (type === 'consecutive_5xx' || type === 'success_rate') this.stats.ejections_total.inc();
    // enforcing_* is the percentage chance that a detected outlier is really ejected.
    if (Math.random() * 100 >= this.enforcing(type)) return;
    this.setActive(this.ejectionsActive + 1);
    this.stats.ejections_enforced_total.inc();
    this.stats.enforced.get(type)!.inc();
    m.host.healthFlags |= HealthFlag.FAILED_OUTLIER_CHECK;
    m.numEjections++;
    m.lastEjectionTime = performance.now();
    m.jitterMs = Math.floor(Math.random() * (c.maxEjectionTimeJitterMs + 1));
    if (m.ejectTimeBackoff * c.baseEjectionTimeMs < c.maxEjectionTimeMs + c.baseEjectionTimeMs)
      m.ejectTimeBackoff++;
    this.onHostChange(m.host);
  }

  private unejectHost(host: Host): void {
    const m = this.monitors.get(host);
    if (!m) return;
    this.setActive(this.ejectionsActive - 1);
    host.healthFlags &= ~HealthFlag.FAILED_OUTLIER_CHECK;
    // A host close to a threshold would otherwise be ejected again on very few errors.
    m.resetConsecutive();
    m.lastUnejectionTime = performance.now();
    this.onHostChange(host);
  }

  private setActive(n: number): void {
    this.ejectionsActive = n;
    this.stats.ejections_active.set(n);
  }

  private arm(): void {
    this.timer = setTimeout(() => this.onIntervalTimer(), this.config.intervalMs);
    this.timer.unref();
  }

  private onIntervalTimer(): void {
    const now = performance.now();
    const c = this.config;
    for (const m of this.monitors.values()) {
      if (m.host.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK) && m.lastEjectionTime !== undefined) {
        const ejectFor =
          Math.min(c.baseEjectionTimeMs * m.ejectTimeBackoff, c.maxEjectionTimeMs) + m.jitterMs;
        if (now - m.lastEjectionTime >= ejectFor) this.unejectHost(m.host);
      }
      m.external.swap();
      m.localOrigin.swap();
      m.external.successRate = -1;
      m.localOrigin.successRate = -1;
    }
    this.processSuccessRateEjections(false);
    this.processSuccessRateEjections(true);
    // Hosts that stayed in for a whole interval since their last ejection earn back ejection time.
    for (const m of this.monitors.values()) {
      if (m.host.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK)) continue;
      if (
        m.lastUnejectionTime !== undefined &&
        now - m.lastUnejectionTime >= c.intervalMs &&
        m.ejectTimeBackoff > 0
      )
        m.ejectTimeBackoff--;
    }
    this.arm();
  }

  private processSuccessRateEjections(localOrigin: boolean): void {
    const c = this.config;
    if (
      this.monitors.size < c.successRateMinimumHosts &&
      this.monitors.size < c.failurePercentageMinimumHosts
    )
      return;
    const sr: Array<[DetectorHostMonitor, number]> = [];
    const fp: Array<[DetectorHostMonitor, number]> = [];
    let sum = 0;
    for (const m of this.monitors.values()) {
      if (m.host.hasFlag(HealthFlag.FAILED_OUTLIER_CHECK)) continue;
      const mon = localOrigin ? m.localOrigin : m.external;
      const rv = mon.rateAndVolume();
      if (!rv) continue;
      const [rate, volume] = rv;
      if (volume >= Math.min(c.successRateRequestVolume, c.failurePercentageRequestVolume))
        mon.successRate = rate;
      if (volume >= c.successRateRequestVolume) {
        sr.push([m, rate]);
        sum += rate;
      }
      if (volume >= c.failurePercentageRequestVolume) fp.push([m, rate]);
    }
    if (sr.length > 0 && sr.length >= c.successRateMinimumHosts) {
      // Outliers sit more than stdev_factor standard deviations below the mean.
      const mean = sum / sr.length;
      const variance = sr.reduce((a, [, r]) => a + (r - mean) ** 2, 0) / sr.length;
      const threshold = mean - (c.successRateStdevFactor / 1000) * Math.sqrt(variance);
      for (const [m, rate] of sr) {
        if (rate < threshold) {
          this.stats.ejections_success_rate.inc();
          const type = localOrigin ? 'local_origin_success_rate' : 'success_rate';
          this.stats.detected.get(type)!.inc();
          this.ejectHost(m, type);
        }
      }
    }
    if (fp.length > 0 && fp.length >= c.failurePercentageMinimumHosts) {
      for (const [m, rate] of fp) {
        if (100 - rate >= c.failurePercentageThreshold) {
          const type = localOrigin ? 'local_origin_failure_percentage' : 'failure_percentage';
          this.stats.detected.get(type)!.inc();
          this.ejectHost(m, type);
        }
      }
    }
  }
}
