// envoy.filters.http.health_check: marks requests matching `headers` as health
// checks (StreamInfo.healthCheck, which not_health_check_filter reads) and
// answers them locally: 200, or 503 with response flag LH when the server
// fails health checks (admin POST /healthcheck/fail) or a cluster in
// cluster_min_healthy_percentages has too few healthy hosts. In pass-through
// mode health checks go upstream, unless the server is failing (503 LH) or a
// response cached for cache_time is at hand.
import type { Headers } from '../../../common/substitution-formatter.js';
import {
  type DecoderFilterCallbacks,
  FilterHeadersStatus,
  type HttpFilter,
  type HttpFilterFactory,
} from '../../../http/filter.js';
import { ResponseFlag } from '../../../http/stream-info.js';
import { compileHeaderMatcher } from '../../../router/route-config.js';
import type { ServerContext } from '../../../server/server-context.js';
import type { ExtensionFactory } from '../../registry.js';

export const HEALTH_CHECK_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck';

/** Envoy's %RESPONSE_CODE_DETAILS% values for this filter. */
const Details = {
  ok: 'health_check_ok',
  failed: 'health_check_failed',
  cached: 'health_check_cached',
  noCluster: 'health_check_failed_no_cluster_found',
  clusterEmpty: 'health_check_failed_cluster_empty',
  clusterHealthy: 'health_check_ok_cluster_healthy',
  clusterUnhealthy: 'health_check_failed_cluster_unhealthy',
} as const;

/**
 * The last health-check response, reused for cache_time. As in Envoy, the cache is
 * cleared on a fixed period counted from when the filter config was made.
 */
class HealthCheckCache {
  private readonly start = Date.now();
  private period = -1;
  private status = 200;
  private degraded = false;

  constructor(private readonly timeoutMs: number) {}

  private currentPeriod(): number {
    return Math.floor((Date.now() - this.start) / this.timeoutMs);
  }

  useCachedResponse(): boolean {
    return this.period === this.currentPeriod();
  }

  set(status: number, degraded: boolean): void {
    this.status = status;
    this.degraded = degraded;
    this.period = this.currentPeriod();
  }

  get(): { status: number; degraded: boolean } {
    return { status: this.status, degraded: this.degraded };
  }
}

interface HealthCheckConfig {
  passThrough: boolean;
  matchers: Array<(h: Headers) => boolean>;
  cache: HealthCheckCache | undefined;
  /** Cluster name -> minimum percent of healthy hosts (only without pass-through). */
  minHealthy: Map<string, number> | undefined;
  server: ServerContext;
}

class HealthCheckFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;
  private healthCheckRequest = false;
  private handling = false;

  constructor(private readonly config: HealthCheckConfig) {}

  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void {
    this.cb = cb;
  }

  setEncoderFilterCallbacks(): void {}

  decodeHeaders(headers: Headers, endStream: boolean): FilterHeadersStatus {
    const c = this.config;
    if (c.matchers.every((m) => m(headers))) {
      this.healthCheckRequest = true;
      this.cb.streamInfo.healthCheck = true;
      // Without pass-through every health check is answered here; with it, only when
      // the server is failing or a cached answer is at hand.
      if (!c.passThrough || c.server.healthCheckFailed || c.cache?.useCachedResponse()) this.handling = true;
    }
    if (!this.handling) return FilterHeadersStatus.Continue;
    const body = this.cb.requestBody;
    // The answer comes once the whole request is in (its body is dropped).
    if (endStream || body.ended) this.onComplete();
    else
      body.consume(
        () => {},
        () => this.onComplete(),
      );
    return FilterHeadersStatus.StopIteration;
  }

  encodeHeaders(status: number, headers: Headers): FilterHeadersStatus {
    const c = this.config;
    if (this.healthCheckRequest) {
      c.cache?.set(status, headers['x-envoy-degraded'] !== undefined);
      headers['x-envoy-upstream-healthchecked-cluster'] = c.server.localClusterName;
    } else if (c.server.healthCheckFailed) {
      headers['x-envoy-immediate-health-check-fail'] = 'true';
    }
    return FilterHeadersStatus.Continue;
  }

  private onComplete(): void {
    const c = this.config;
    const info = this.cb.streamInfo;
    let status = 200;
    let details: string = Details.ok;
    let degraded = false;
    if (c.server.healthCheckFailed) {
      info.setFlag(ResponseFlag.LH);
      status = 503;
      details = Details.failed;
    } else {
      if (c.cache) {
        ({ status, degraded } = c.cache.get());
        details = Details.cached;
      } else if (c.minHealthy) {
        for (const [name, min] of c.minHealthy) {
          details = Details.clusterHealthy;
          const cluster = c.server.clusterManager.get(name);
          if (!cluster) {
            status = 503;
            details = Details.noCluster;
            break;
          }
          const total = cluster.stats.membership_total.value;
          if (total === 0) {
            // An empty cluster fails unless its minimum is zero.
            if (min === 0) continue;
            status = 503;
            details = Details.clusterEmpty;
            break;
          }
          // Degraded hosts count as healthy in membership_healthy (they take traffic).
          if (100 * cluster.stats.membership_healthy.value < total * min) {
            status = 503;
            details = Details.clusterUnhealthy;
            break;
          }
        }
      }
      if (status < 200 || status >= 300) info.setFlag(ResponseFlag.LH);
    }
    this.cb.sendLocalReply(status, '', {
      details,
      ...(degraded ? { headers: { 'x-envoy-degraded': '' } } : {}),
    });
  }
}

export const healthCheckFactory: ExtensionFactory<HttpFilterFactory> = {
  name: 'envoy.filters.http.health_check',
  typeUrls: [HEALTH_CHECK_TYPE_URL],
  category: 'http_filter',
  create(r, ctx) {
    if (!r.has('pass_through_mode')) throw r.error('pass_through_mode', 'is required');
    const passThrough = r.bool('pass_through_mode');
    const cacheMs = r.durationMs('cache_time', 0);
    if (!passThrough && cacheMs > 0)
      throw r.error('cache_time', 'must not be set when pass_through_mode is disabled');
    const matchers = r.list('headers').map(compileHeaderMatcher);
    const percentages = r.map('cluster_min_healthy_percentages');
    let minHealthy: Map<string, number> | undefined;
    // Envoy reads the percentages only without pass-through (it ignores them otherwise).
    for (const [name, p] of percentages) {
      const v = Math.trunc(p.num('value', 0));
      if (!passThrough) (minHealthy ??= new Map()).set(name, v);
    }
    const config: HealthCheckConfig = {
      passThrough,
      matchers,
      cache: cacheMs > 0 ? new HealthCheckCache(cacheMs) : undefined,
      minHealthy,
      server: ctx.server,
    };
    return {
      name: 'envoy.filters.http.health_check',
      terminal: false,
      createFilter: () => new HealthCheckFilter(config),
    };
  },
};
