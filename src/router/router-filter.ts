// envoy.filters.http.router: the terminal HTTP filter. Picks the route's
// cluster and a host, sends the request upstream on a pooled connection,
// streams the response back with backpressure, and turns failures into
// Envoy's local replies and response flags.

import type { Headers } from '../common/substitution-formatter.js';
import { timerMs } from '../common/timers.js';
import type { ExtensionFactory } from '../extensions/registry.js';
import { stripHopByHop } from '../http/active-stream.js';
import {
  type DecoderFilterCallbacks,
  FilterHeadersStatus,
  type HttpFilter,
  type HttpFilterContext,
  type HttpFilterFactory,
} from '../http/filter.js';
import { ResponseFlag } from '../http/stream-info.js';
import type { Cluster } from '../upstream/cluster.js';
import type { Host } from '../upstream/host.js';
import type { ResetReason, UpstreamRequest } from '../upstream/upstream-request.js';
import { formatSetCookie } from './hash-policy.js';

const EMPTY = Buffer.alloc(0);

import type {
  ClusterRouteAction,
  DirectResponseRouteAction,
  RedirectRouteAction,
  Route,
  VirtualHost,
  WeightedClusterEntry,
} from './route-config.js';

export const ROUTER_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export interface RouterConfig {
  suppressEnvoyHeaders: boolean;
}

const RESET_BEFORE_HEADERS = 'upstream connect error or disconnect/reset before headers. reset reason: ';

class RouterFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;
  private upstream: UpstreamRequest | undefined;
  private host: Host | undefined;
  private cluster: Cluster | undefined;
  private timer: NodeJS.Timeout | undefined;
  private responseStarted = false;
  /** A hash-policy cookie Herald generated, to set on the response. */
  private setCookie: string | undefined;
  private done = false;

  constructor(
    private readonly config: RouterConfig,
    private readonly ctx: HttpFilterContext,
  ) {}

  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void {
    this.cb = cb;
  }

  decodeHeaders(headers: Headers): FilterHeadersStatus {
    const cb = this.cb;
    const matched = cb.route();
    if (!matched) {
      cb.hcmStats.no_route.inc();
      cb.sendLocalReply(404, '', { details: 'route_not_found', flags: ResponseFlag.NR });
      return FilterHeadersStatus.StopIteration;
    }
    const { route, vhost } = matched;
    const action = route.action;
    if (action.kind === 'direct_response') {
      this.directResponse(action);
      return FilterHeadersStatus.StopIteration;
    }
    if (action.kind === 'redirect') {
      this.redirect(action, headers);
      return FilterHeadersStatus.StopIteration;
    }

    // Upgrades (WebSocket): allowed by the route's upgrade_configs, else the HCM's; else 403.
    const upgrade = cb.upgradeType;
    if (upgrade !== undefined) {
      const allowed = action.upgrades?.get(upgrade) ?? cb.hcmUpgrades.get(upgrade) ?? false;
      if (!allowed) {
        cb.sendLocalReply(403, '', { details: 'upgrade_failed' });
        return FilterHeadersStatus.StopIteration;
      }
      cb.hcmStats.downstream_cx_upgrades_total.inc();
    }
    let weighted: WeightedClusterEntry | undefined;
    let clusterName: string;
    if (action.weighted) {
      weighted = pickWeighted(action.weighted.clusters, action.weighted.total);
      clusterName = weighted.name;
    } else if (action.clusterHeader !== undefined) {
      const v = headers[action.clusterHeader];
      clusterName = (Array.isArray(v) ? v[0] : v) ?? '';
    } else {
      clusterName = action.cluster ?? '';
    }
    const cluster = this.ctx.clusterManager.get(clusterName);
    cb.streamInfo.upstreamCluster = clusterName;
    if (!cluster) {
      cb.hcmStats.no_cluster.inc();
      cb.sendLocalReply(503, '', { details: 'cluster_not_found', flags: ResponseFlag.NC });
      return FilterHeadersStatus.StopIteration;
    }
    this.cluster = cluster;
    let hashKey: bigint | undefined;
    if (action.hashPolicy) {
      const p = (headers[':path'] as string | undefined) ?? '';
      const qi = p.indexOf('?');
      hashKey = action.hashPolicy.hash(
        { headers, sourceIp: cb.downstream.remoteAddress, query: qi < 0 ? '' : p.slice(qi + 1) },
        (c) => {
          this.setCookie = formatSetCookie(c);
        },
      );
    }
    const host = cluster.chooseHost(hashKey === undefined ? undefined : { hashKey });
    if (!host) {
      cluster.stats.upstream_cx_none_healthy.inc();
      cb.sendLocalReply(503, 'no healthy upstream', {
        details: 'no_healthy_upstream',
        flags: ResponseFlag.UH,
      });
      return FilterHeadersStatus.StopIteration;
    }
    this.host = host;
    if (action.idleTimeoutMs !== undefined) cb.setStreamIdleTimeout(action.idleTimeoutMs);
    cb.streamInfo.upstreamHost = host.addressString;
    cb.streamInfo.attemptCount = 1;
    this.sendUpstream(route, vhost, action, weighted, cluster, host, headers);
    return FilterHeadersStatus.StopIteration;
  }

  private directResponse(a: DirectResponseRouteAction): void {
    const cb = this.cb;
    const headers: Headers = {};
    const body = a.body ?? Buffer.alloc(0);
    if (body.length) headers['content-type'] = 'text/plain';
    headers['content-length'] = String(body.length);
    cb.hcmStats.rq_direct_response.inc();
    cb.streamInfo.responseCodeDetails = 'direct_response';
    cb.streamInfo.bytesSent += body.length;
    cb.encodeHeaders(a.status, headers, body.length === 0);
    if (body.length) cb.encodeData(body, true);
  }

  private redirect(a: RedirectRouteAction, h: Headers): void {
    const cb = this.cb;
    const origScheme = (h['x-forwarded-proto'] as string | undefined) ?? cb.downstream.scheme;
    const scheme = a.scheme ?? origScheme;
    let authority = a.host ?? (h[':authority'] as string | undefined) ?? '';
    const fullPath = (h[':path'] as string | undefined) ?? '/';
    const qi = fullPath.indexOf('?');
    let path = qi < 0 ? fullPath : fullPath.slice(0, qi);
    let query = qi < 0 ? '' : fullPath.slice(qi);
    if (a.port !== undefined) {
      authority = `${hostWithoutPort(authority)}${a.port === 0 ? '' : `:${a.port}`}`;
    } else if (a.scheme && a.scheme !== origScheme) {
      // Envoy drops the port of the original scheme's default when the scheme changes.
      const host = hostWithoutPort(authority);
      const port = authority.slice(host.length + 1);
      if ((origScheme === 'http' && port === '80') || (origScheme === 'https' && port === '443'))
        authority = host;
    }
    if (a.path !== undefined) {
      const pq = a.path.indexOf('?');
      if (pq >= 0) {
        query = a.path.slice(pq);
        path = a.path.slice(0, pq);
      } else path = a.path;
    } else if (a.prefixRewrite !== undefined) {
      const matched = cb.route()?.route.matchedPrefix ?? '';
      path = a.prefixRewrite + path.slice(matched.length);
    } else if (a.regexRewrite) {
      path = path.replace(a.regexRewrite.pattern, a.regexRewrite.substitution);
    }
    // strip_query drops the request's query, not one written into path_redirect.
    if (a.stripQuery && !(a.path?.includes('?') ?? false)) query = '';
    cb.hcmStats.rq_redirect.inc();
    cb.streamInfo.responseCodeDetails = 'redirect';
    cb.encodeHeaders(
      a.responseCode,
      { location: `${scheme}://${authority}${path}${query}`, 'content-length': '0' },
      true,
    );
  }

  private sendUpstream(
    route: Route,
    vhost: VirtualHost,
    action: ClusterRouteAction,
    weighted: WeightedClusterEntry | undefined,
    cluster: Cluster,
    host: Host,
    h: Headers,
  ): void {
    const cb = this.cb;
    const suppress = this.config.suppressEnvoyHeaders;

    // Timeout: the route's, unless the client asked for one (x-envoy-upstream-rq-timeout-ms).
    let timeoutMs = action.timeoutMs;
    const hdrTimeout = h['x-envoy-upstream-rq-timeout-ms'];
    if (typeof hdrTimeout === 'string' && /^\d+$/.test(hdrTimeout)) timeoutMs = Number(hdrTimeout);
    delete h['x-envoy-upstream-rq-timeout-ms'];
    if (timeoutMs > 0 && !suppress) h['x-envoy-expected-rq-timeout-ms'] = String(timeoutMs);

    // Path and host rewrites.
    const fullPath = (h[':path'] as string | undefined) ?? '/';
    if (action.prefixRewrite !== undefined || action.regexRewrite) {
      const qi = fullPath.indexOf('?');
      const path = qi < 0 ? fullPath : fullPath.slice(0, qi);
      const query = qi < 0 ? '' : fullPath.slice(qi);
      let newPath: string;
      if (action.prefixRewrite !== undefined)
        newPath = action.prefixRewrite + path.slice((route.matchedPrefix ?? '').length);
      else newPath = path.replace(action.regexRewrite!.pattern, action.regexRewrite!.substitution);
      if (!suppress) h['x-envoy-original-path'] = fullPath;
      h[':path'] = newPath + query;
    }
    if (action.hostRewriteLiteral !== undefined) h[':authority'] = action.hostRewriteLiteral;
    else if (action.autoHostRewrite && host.hostname) h[':authority'] = host.hostname;
    else if (action.hostRewriteHeader !== undefined) {
      const v = h[action.hostRewriteHeader];
      if (typeof v === 'string' && v) h[':authority'] = v;
    }

    // Header mutations, most specific first (weighted cluster, route, virtual host, route config).
    // The format context is built only when some level has mutations (most routes have none).
    if (
      (weighted && !weighted.requestMutations.empty) ||
      !route.requestMutations.empty ||
      !vhost.requestMutations.empty ||
      !cb.routeTable.requestMutations.empty
    ) {
      const fctx = cb.formatContext();
      weighted?.requestMutations.apply(h, fctx);
      route.requestMutations.apply(h, fctx);
      vhost.requestMutations.apply(h, fctx);
      cb.routeTable.requestMutations.apply(h, fctx);
    }

    cluster.stats.upstream_rq_total.inc();
    cluster.stats.upstream_rq_active.inc();
    host.activeRequests++;
    const body = cb.requestBody;
    const upgrade = cb.upgradeType !== undefined;
    const endStream = !upgrade && body.ended && body.bytes === 0;
    const start = process.hrtime.bigint();
    const upstream = cluster.pools.forHost(host, cb.downstream.protocol === 'HTTP/2').newStream(
      h,
      { endStream, upgrade, connectTimeoutMs: cluster.config.connectTimeoutMs },
      {
        onHeaders: (status, resHeaders, end) => {
          if (this.done) return;
          this.clearTimer();
          this.responseStarted = true;
          cluster.stats.responseCode(status);
          if (status === 101 && upgrade) {
            // Switching protocols keeps its Connection/Upgrade headers.
            const u = resHeaders.upgrade;
            stripHopByHop(resHeaders);
            resHeaders.connection = 'upgrade';
            if (u !== undefined) resHeaders.upgrade = u;
          } else stripHopByHop(resHeaders);
          if (!suppress)
            resHeaders['x-envoy-upstream-service-time'] = String(
              Number((process.hrtime.bigint() - start) / 1000000n),
            );
          if (weighted && !weighted.responseMutations.empty)
            weighted.responseMutations.apply(resHeaders, cb.formatContext(resHeaders));
          if (this.setCookie) appendHeader(resHeaders, 'set-cookie', this.setCookie);
          cb.streamInfo.responseCodeDetails = 'via_upstream';
          if (end) this.finish(start);
          cb.encodeHeaders(status, resHeaders, end);
        },
        onData: (chunk, end) => {
          if (this.done && !end) return;
          if (end) this.finish(start);
          if (!cb.encodeData(chunk, end) && !end) {
            upstream.pauseResponse();
            cb.onDownstreamDrain(() => upstream.resumeResponse());
          }
        },
        onTrailers: (trailers) => {
          this.finish(start);
          cb.encodeTrailers(trailers);
        },
        onReset: (reason, detail) => this.onUpstreamFailure(reason, detail),
      },
    );
    this.upstream = upstream;
    cb.onDownstreamReset(() => this.abortUpstream());
    const shadows = action.mirrors ? this.startShadows(action, h, endStream, timeoutMs) : undefined;

    const startTimer = () => {
      if (timeoutMs > 0 && !this.responseStarted && !this.done) {
        this.timer = setTimeout(() => this.onTimeout(), timerMs(timeoutMs));
      }
    };
    if (endStream) {
      body.discard();
      startTimer();
      return;
    }
    // An upgrade request is complete at its headers; what follows is the tunnel.
    if (upgrade) startTimer();
    // Stream the request body with backpressure both ways.
    body.consume(
      (chunk) => {
        if (shadows) for (const sh of shadows) sh.sendData(chunk, false);
        if (!upstream.sendData(chunk, false)) {
          body.pause();
          upstream.onDrain(() => body.resume());
        }
      },
      (trailers) => {
        if (trailers) upstream.sendTrailers(trailers);
        else upstream.sendData(EMPTY, true);
        if (shadows)
          for (const sh of shadows) trailers ? sh.sendTrailers(trailers) : sh.sendData(EMPTY, true);
        startTimer();
      },
    );
  }

  /**
   * request_mirror_policies: a copy of the request to each mirror cluster (host with "-shadow"),
   * its response and failures ignored; bounded by the route timeout.
   */
  private startShadows(
    action: ClusterRouteAction,
    h: Headers,
    endStream: boolean,
    timeoutMs: number,
  ): UpstreamRequest[] {
    const out: UpstreamRequest[] = [];
    for (const m of action.mirrors ?? []) {
      if (m.sample && !m.sample()) continue;
      let name = m.cluster;
      if (name === undefined) {
        const v = h[m.clusterHeader ?? ''];
        name = Array.isArray(v) ? v[0] : v;
      }
      const cluster = name ? this.ctx.clusterManager.get(name) : undefined;
      const host = cluster?.chooseHost();
      if (!cluster || !host) continue;
      const sh: Headers = { ...h };
      if (m.appendShadowSuffix) sh[':authority'] = shadowAuthority(String(h[':authority'] ?? ''));
      cluster.stats.upstream_rq_total.inc();
      let timer: NodeJS.Timeout | undefined;
      const req = cluster.pools.forHost(host, this.cb.downstream.protocol === 'HTTP/2').newStream(
        sh,
        { endStream, connectTimeoutMs: cluster.config.connectTimeoutMs },
        {
          onHeaders: (status, _h, end) => {
            cluster.stats.responseCode(status);
            if (end) clearTimeout(timer);
          },
          onData: (_c, end) => {
            if (end) clearTimeout(timer);
          },
          onTrailers: () => clearTimeout(timer),
          onReset: () => clearTimeout(timer),
        },
      );
      if (timeoutMs > 0) timer = setTimeout(() => req.abort(), timerMs(timeoutMs)).unref();
      out.push(req);
    }
    return out;
  }

  private onTimeout(): void {
    if (this.done) return;
    this.cluster?.stats.upstream_rq_timeout.inc();
    this.abortUpstream();
    this.finish();
    this.cluster?.stats.responseCode(504); // Envoy charges the local reply to the cluster
    this.cb.sendLocalReply(504, 'upstream request timeout', {
      details: 'upstream_response_timeout',
      flags: ResponseFlag.UT,
    });
  }

  private onUpstreamFailure(reason: ResetReason, _detail: string): void {
    if (this.done) return;
    const flag =
      reason === 'connection_failure'
        ? ResponseFlag.UF
        : reason === 'connection_termination'
          ? ResponseFlag.UC
          : reason === 'overflow'
            ? ResponseFlag.UO
            : ResponseFlag.UR;
    this.finish();
    if (this.responseStarted) {
      this.cb.streamInfo.setFlag(flag);
      this.cb.resetStream();
      return;
    }
    const status = reason === 'protocol_error' ? 502 : 503;
    this.cluster?.stats.responseCode(status); // Envoy charges the local reply to the cluster
    this.cb.sendLocalReply(status, RESET_BEFORE_HEADERS + reason.replace('_', ' '), {
      details: `upstream_reset_before_response_started{${reason}}`,
      flags: flag,
    });
  }

  private abortUpstream(): void {
    this.upstream?.abort();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** `upstreamStart`: the upstream response completed (Envoy records upstream_rq_time then). */
  private finish(upstreamStart?: bigint): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    if (upstreamStart !== undefined)
      this.cluster?.stats.upstream_rq_time.recordValue(Number(process.hrtime.bigint() - upstreamStart) / 1e6);
    if (this.host) this.host.activeRequests--;
    if (this.cluster) {
      this.cluster.stats.upstream_rq_active.dec();
      this.cluster.stats.upstream_rq_completed.inc();
    }
  }

  onDestroy(): void {
    if (!this.done) {
      this.abortUpstream();
      this.finish();
    }
  }
}

function pickWeighted(clusters: WeightedClusterEntry[], total: number): WeightedClusterEntry {
  let x = Math.floor(Math.random() * total);
  for (const c of clusters) {
    if (x < c.weight) return c;
    x -= c.weight;
  }
  return clusters[clusters.length - 1]!;
}

/** Envoy's shadow host: "-shadow" appended to the host name (before any port). */
function shadowAuthority(authority: string): string {
  const host = hostWithoutPort(authority);
  return `${host}-shadow${authority.slice(host.length)}`;
}

function appendHeader(h: Headers, name: string, value: string): void {
  const cur = h[name];
  h[name] = cur === undefined ? value : Array.isArray(cur) ? [...cur, value] : [cur, value];
}

function hostWithoutPort(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(0, authority.indexOf(']') + 1);
  const c = authority.lastIndexOf(':');
  return c >= 0 ? authority.slice(0, c) : authority;
}

export const routerFactory: ExtensionFactory<HttpFilterFactory> = {
  name: 'envoy.filters.http.router',
  typeUrls: [ROUTER_TYPE_URL],
  category: 'http_filter',
  create(r) {
    // dynamic_stats only selects extra per-request stats; Herald has none to switch off.
    r.ignore('dynamic_stats');
    const config: RouterConfig = { suppressEnvoyHeaders: r.bool('suppress_envoy_headers') };
    return {
      name: 'envoy.filters.http.router',
      terminal: true,
      createFilter: (ctx) => new RouterFilter(config, ctx),
    };
  },
};
