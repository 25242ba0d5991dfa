// envoy.filters.http.fault: injects delays and aborts into a share of the
// requests (Istio's fault injection is this filter). A delayed request carries
// response flag DI, an aborted one FI; requests can ask for faults with the
// x-envoy-fault-* headers when the config says so (header_delay, header_abort).
// The route's typed_per_filter_config (an HTTPFault) replaces the filter's own.

import type { Headers } from '../../../common/substitution-formatter.js';
import { timerMs } from '../../../common/timers.js';
import type { Reader } from '../../../config/reader.js';
import {
  type DecoderFilterCallbacks,
  FilterHeadersStatus,
  type HttpFilter,
  type HttpFilterFactory,
} from '../../../http/filter.js';
import { ResponseFlag } from '../../../http/stream-info.js';
import { compileHeaderMatcher } from '../../../router/route-config.js';
import type { Counter, Gauge } from '../../../stats/store.js';
import type { ExtensionFactory } from '../../registry.js';

export const FAULT_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

/** A FractionalPercent as a chance in [0, 1]. */
function percent(r: Reader | undefined, def: number): number {
  if (!r) return def;
  const den =
    { HUNDRED: 100, TEN_THOUSAND: 10000, MILLION: 1000000 }[r.enum('denominator', 'HUNDRED')] ?? 100;
  return Math.min(1, r.num('numerator', 0) / den);
}

interface FaultConfig {
  delay?: { fixedMs?: number; fromHeader: boolean; chance: number };
  abort?: { httpStatus?: number; grpcStatus?: number; fromHeader: boolean; chance: number };
  upstreamCluster?: string;
  headers: Array<(h: Headers) => boolean>;
  maxActiveFaults?: number;
}

function compileFault(r: Reader): FaultConfig {
  const cfg: FaultConfig = { headers: r.list('headers').map(compileHeaderMatcher) };
  const d = r.msg('delay');
  if (d) {
    const kind = d.oneof('fixed_delay', 'header_delay');
    if (!kind) throw d.error('fixed_delay', 'fixed_delay or header_delay is required');
    if (kind === 'header_delay') d.msg('header_delay');
    cfg.delay = {
      ...(kind === 'fixed_delay' ? { fixedMs: d.durationMs('fixed_delay', 0) } : {}),
      fromHeader: kind === 'header_delay',
      chance: percent(d.msg('percentage'), 1),
    };
  }
  const a = r.msg('abort');
  if (a) {
    const kind = a.oneof('http_status', 'grpc_status', 'header_abort');
    if (!kind) throw a.error('http_status', 'http_status, grpc_status or header_abort is required');
    if (kind === 'header_abort') a.msg('header_abort');
    cfg.abort = {
      ...(kind === 'http_status' ? { httpStatus: a.num('http_status', 503) } : {}),
      ...(kind === 'grpc_status' ? { grpcStatus: a.num('grpc_status', 14) } : {}),
      fromHeader: kind === 'header_abort',
      chance: percent(a.msg('percentage'), 1),
    };
  }
  const up = r.str('upstream_cluster', '');
  if (up) cfg.upstreamCluster = up;
  const max = r.num('max_active_faults');
  if (max !== undefined) cfg.maxActiveFaults = max;
  // Runtime key names: Herald's runtime has no layers that could override them.
  r.ignore(
    'delay_percent_runtime',
    'abort_percent_runtime',
    'delay_duration_runtime',
    'abort_http_status_runtime',
    'abort_grpc_status_runtime',
    'max_active_faults_runtime',
    'response_rate_limit_percent_runtime',
  );
  return cfg;
}

interface FaultStats {
  delays: Counter;
  aborts: Counter;
  active: Gauge;
  overflow: Counter;
}

function headerNumber(h: Headers, name: string): number | undefined {
  const v = h[name];
  return typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** http.<stat_prefix>.fault.*, made once per connection manager. */
const statsByHcm = new WeakMap<object, FaultStats>();
function faultStats(cb: DecoderFilterCallbacks): FaultStats {
  let s = statsByHcm.get(cb.hcmStats);
  if (!s) {
    const scope = cb.hcmStats.scope.scope('fault.');
    s = {
      delays: scope.counter('delays_injected'),
      aborts: scope.counter('aborts_injected'),
      active: scope.gauge('active_faults'),
      overflow: scope.counter('faults_overflow'),
    };
    statsByHcm.set(cb.hcmStats, s);
  }
  return s;
}

class FaultFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;
  private timer: NodeJS.Timeout | undefined;
  private counted = false;
  private stats!: FaultStats;

  constructor(
    private readonly base: FaultConfig,
    private readonly configName: string,
  ) {}

  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void {
    this.cb = cb;
    this.stats = faultStats(cb);
  }

  decodeHeaders(h: Headers): FilterHeadersStatus {
    const cfg = this.cb.perFilterConfig<FaultConfig>(this.configName) ?? this.base;
    if (cfg.headers.length && !cfg.headers.every((m) => m(h))) return FilterHeadersStatus.Continue;
    if (cfg.upstreamCluster !== undefined) {
      const r = this.cb.route();
      const a = r?.route.action;
      if (a?.kind !== 'route' || a.cluster !== cfg.upstreamCluster) return FilterHeadersStatus.Continue;
    }
    // The header percentages only narrow the configured ones (Envoy takes the smaller).
    const delayMs = cfg.delay?.fromHeader
      ? headerNumber(h, 'x-envoy-fault-delay-request')
      : cfg.delay?.fixedMs;
    const abortStatus = cfg.abort?.fromHeader
      ? headerNumber(h, 'x-envoy-fault-abort-request')
      : cfg.abort?.httpStatus;
    const grpcStatus = cfg.abort?.fromHeader
      ? headerNumber(h, 'x-envoy-fault-abort-grpc-request')
      : cfg.abort?.grpcStatus;
    const chance = (c: number, header: string) => {
      const p = headerNumber(h, header);
      return p === undefined ? c : Math.min(c, p / 100);
    };
    const delay =
      cfg.delay &&
      delayMs !== undefined &&
      Math.random() < chance(cfg.delay.chance, 'x-envoy-fault-delay-request-percentage');
    const abort =
      cfg.abort &&
      (abortStatus !== undefined || grpcStatus !== undefined) &&
      Math.random() < chance(cfg.abort.chance, 'x-envoy-fault-abort-request-percentage');
    if (!delay && !abort) return FilterHeadersStatus.Continue;
    if (cfg.maxActiveFaults !== undefined && this.stats.active.value >= cfg.maxActiveFaults) {
      this.stats.overflow.inc();
      return FilterHeadersStatus.Continue;
    }
    this.counted = true;
    this.stats.active.inc();
    const doAbort = () => {
      if (!abort) {
        this.end();
        this.cb.continueDecoding();
        return;
      }
      this.stats.aborts.inc();
      this.end();
      this.cb.sendLocalReply(abortStatus ?? 200, 'fault filter abort', {
        details: 'fault_filter_abort',
        flags: ResponseFlag.FI,
        ...(grpcStatus !== undefined ? { grpcStatus } : {}),
      });
    };
    if (delay) {
      this.stats.delays.inc();
      this.cb.streamInfo.setFlag(ResponseFlag.DI);
      this.timer = setTimeout(doAbort, timerMs(delayMs ?? 0));
      return FilterHeadersStatus.StopIteration;
    }
    doAbort();
    return FilterHeadersStatus.StopIteration;
  }

  private end(): void {
    if (this.counted) {
      this.counted = false;
      this.stats.active.dec();
    }
  }

  onDestroy(): void {
    clearTimeout(this.timer);
    this.end();
  }
}

export const faultFactory: ExtensionFactory<HttpFilterFactory> = {
  name: 'envoy.filters.http.fault',
  typeUrls: [FAULT_TYPE_URL],
  routeConfigTypeUrls: [FAULT_TYPE_URL],
  category: 'http_filter',
  createRouteConfig: (r) => compileFault(r),
  create(r) {
    const base = compileFault(r);
    return {
      name: 'envoy.filters.http.fault',
      terminal: false,
      // Called on the HCM's copy of this factory, which carries the filter's config name.
      createFilter(this: HttpFilterFactory) {
        return new FaultFilter(base, this.configName ?? 'envoy.filters.http.fault');
      },
    };
  },
};
