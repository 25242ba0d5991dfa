// envoy.filters.http.local_ratelimit: a token bucket in front of the route.
// A request that finds no token is answered 429 (`status`) with body
// "local_rate_limited" and response flag RL when the filter is enforced, or
// only counted when it is merely enabled. A route's typed_per_filter_config
// (a LocalRateLimit) gets its own bucket.
//
// Each Herald process has its own buckets (with workers, Envoy shares one
// bucket across its worker threads): documented in docs/compatibility.md.

import type { Headers } from '../../../common/substitution-formatter.js';
import type { Reader } from '../../../config/reader.js';
import {
  type DecoderFilterCallbacks,
  FilterHeadersStatus,
  type HttpFilter,
  type HttpFilterFactory,
} from '../../../http/filter.js';
import { ResponseFlag } from '../../../http/stream-info.js';
import type { Counter, StatsStore } from '../../../stats/store.js';
import type { ExtensionFactory } from '../../registry.js';

export const LOCAL_RATELIMIT_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';

/** Envoy's token bucket: max_tokens, refilled by tokens_per_fill every fill_interval. */
class TokenBucket {
  private tokens: number;
  private last = Date.now();

  constructor(
    private readonly max: number,
    private readonly perFill: number,
    private readonly intervalMs: number,
  ) {
    this.tokens = max;
  }

  consume(): boolean {
    const now = Date.now();
    const fills = Math.floor((now - this.last) / this.intervalMs);
    if (fills > 0) {
      this.tokens = Math.min(this.max, this.tokens + fills * this.perFill);
      this.last += fills * this.intervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

interface RateLimitConfig {
  bucket: TokenBucket | undefined;
  enabled: () => boolean;
  enforced: () => boolean;
  status: number;
  responseHeaders: Array<[string, string]>;
  prefix: string;
  /** <stat_prefix>.http_local_rate_limit.*, made on first use (route configs compile without a store). */
  stats?: { enabled: Counter; enforced: Counter; rateLimited: Counter; ok: Counter };
}

/** RuntimeFractionalPercent: its default value (Herald's runtime has no layers overriding it). */
function fraction(r: Reader | undefined, def: number): () => boolean {
  if (!r) return () => def >= 1;
  r.str('runtime_key');
  const dv = r.msg('default_value');
  const den =
    { HUNDRED: 100, TEN_THOUSAND: 10000, MILLION: 1000000 }[
      dv?.enum('denominator', 'HUNDRED') ?? 'HUNDRED'
    ] ?? 100;
  const p = (dv?.num('numerator', 0) ?? 0) / den;
  return () => Math.random() < p;
}

function compileRateLimit(r: Reader): RateLimitConfig {
  // false (the default) is a bucket shared by every connection, which is what Herald does.
  if (r.bool('local_rate_limit_per_downstream_connection'))
    throw r.error('local_rate_limit_per_downstream_connection', 'per-connection buckets are not supported');
  const prefix = r.str('stat_prefix', '');
  if (!prefix) throw r.error('stat_prefix', 'is required');
  const tb = r.msg('token_bucket');
  const bucket = tb
    ? new TokenBucket(
        tb.num('max_tokens', 1),
        tb.msg('tokens_per_fill')?.num('value', 1) ?? tb.num('tokens_per_fill', 1),
        tb.durationMs('fill_interval', 1000),
      )
    : undefined;
  if (tb && (tb.durationMs('fill_interval', 1000) ?? 0) < 50)
    throw tb.error('fill_interval', 'must be at least 50ms (Envoy)');
  const st = r.msg('status');
  const status = st ? st.enum<string>('code', 'TooManyRequests') : 'TooManyRequests';
  const code =
    typeof status === 'string' && /^\d+$/.test(status) ? Number(status) : (STATUS_CODES[status] ?? 429);
  const responseHeaders: Array<[string, string]> = r.list('response_headers_to_add').map((o) => {
    const h = o.msg('header')!;
    o.enum('append_action', 'APPEND_IF_EXISTS_OR_ADD');
    if (o.has('append')) o.bool('append');
    return [h.str('key', '').toLowerCase(), h.str('value', '')];
  });
  return {
    bucket,
    enabled: fraction(r.msg('filter_enabled'), 0),
    enforced: fraction(r.msg('filter_enforced'), 0),
    status: code,
    responseHeaders,
    prefix,
  };
}

function statsOf(cfg: RateLimitConfig, store: StatsStore): NonNullable<RateLimitConfig['stats']> {
  if (!cfg.stats) {
    const scope = store.scope(`${cfg.prefix}.http_local_rate_limit.`);
    cfg.stats = {
      enabled: scope.counter('enabled'),
      enforced: scope.counter('enforced'),
      rateLimited: scope.counter('rate_limited'),
      ok: scope.counter('ok'),
    };
  }
  return cfg.stats;
}

/** type.v3.StatusCode names Herald maps (the common ones). */
const STATUS_CODES: Record<string, number> = {
  TooManyRequests: 429,
  ServiceUnavailable: 503,
  Forbidden: 403,
  BadRequest: 400,
  Unauthorized: 401,
  InternalServerError: 500,
};

class LocalRateLimitFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;

  constructor(
    private readonly base: RateLimitConfig,
    private readonly configName: string,
  ) {}

  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void {
    this.cb = cb;
  }

  decodeHeaders(_h: Headers): FilterHeadersStatus {
    const cfg = this.cb.perFilterConfig<RateLimitConfig>(this.configName) ?? this.base;
    if (!cfg.bucket || !cfg.enabled()) return FilterHeadersStatus.Continue;
    const stats = statsOf(cfg, this.cb.hcmStats.scope.store);
    stats.enabled.inc();
    if (cfg.bucket.consume()) {
      stats.ok.inc();
      return FilterHeadersStatus.Continue;
    }
    stats.rateLimited.inc();
    if (!cfg.enforced()) return FilterHeadersStatus.Continue;
    stats.enforced.inc();
    const headers: Headers = {};
    for (const [k, v] of cfg.responseHeaders) headers[k] = v;
    this.cb.sendLocalReply(cfg.status, 'local_rate_limited', {
      details: 'local_rate_limited',
      flags: ResponseFlag.RL,
      headers,
    });
    return FilterHeadersStatus.StopIteration;
  }
}

export const localRateLimitFactory: ExtensionFactory<HttpFilterFactory> = {
  name: 'envoy.filters.http.local_ratelimit',
  typeUrls: [LOCAL_RATELIMIT_TYPE_URL],
  routeConfigTypeUrls: [LOCAL_RATELIMIT_TYPE_URL],
  category: 'http_filter',
  createRouteConfig: (r) => compileRateLimit(r),
  create(r) {
    const base = compileRateLimit(r);
    return {
      name: 'envoy.filters.http.local_ratelimit',
      terminal: false,
      // Called on the HCM's copy of this factory, which carries the filter's config name.
      createFilter(this: HttpFilterFactory) {
        return new LocalRateLimitFilter(base, this.configName ?? 'envoy.filters.http.local_ratelimit');
      },
    };
  },
};
