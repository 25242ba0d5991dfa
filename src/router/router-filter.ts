// envoy.filters.http.router: the terminal HTTP filter. Picks the route's
// cluster and a host, sends the request upstream on a pooled connection,
// streams the response back with backpressure, and turns failures into
// Envoy's local replies and response flags.
import http from 'node:http';
import type http2 from 'node:http2';
import type { Headers } from '../common/substitution-formatter.js';
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

type ResetReason =
  | 'connection_failure'
  | 'connection_termination'
  | 'remote_reset'
  | 'local_reset'
  | 'overflow';

function isConnectError(code: string | undefined): boolean {
  return (
    code === 'ECONNREFUSED' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'EADDRNOTAVAIL' ||
    code === 'ETIMEDOUT' ||
    code === 'HERALD_CONNECT_TIMEOUT'
  );
}

class RouterFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;
  private upstreamReq: http.ClientRequest | http2.ClientHttp2Stream | undefined;
  private host: Host | undefined;
  private cluster: Cluster | undefined;
  private timer: NodeJS.Timeout | undefined;
  private responseStarted = false;
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
      cb.sendLocalReply(503, '', { details: 'cluster_not_found', flags: ResponseFlag.NC });
      return FilterHeadersStatus.StopIteration;
    }
    this.cluster = cluster;
    const host = cluster.chooseHost();
    if (!host) {
      cluster.stats.upstream_cx_none_healthy.inc();
      cb.sendLocalReply(503, 'no healthy upstream', {
        details: 'no_healthy_upstream',
        flags: ResponseFlag.UH,
      });
      return FilterHeadersStatus.StopIteration;
    }
    this.host = host;
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
    if (a.stripQuery) query = '';
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
    const fctx = cb.formatContext();
    weighted?.requestMutations.apply(h, fctx);
    route.requestMutations.apply(h, fctx);
    vhost.requestMutations.apply(h, fctx);
    cb.routeTable.requestMutations.apply(h, fctx);

    cluster.stats.upstream_rq_total.inc();
    cluster.stats.upstream_rq_active.inc();
    host.activeRequests++;
    const start = process.hrtime.bigint();
    const onResponse = (status: number, resHeaders: Headers) => {
      this.clearTimer();
      this.responseStarted = true;
      cluster.stats.responseCode(status);
      stripHopByHop(resHeaders);
      if (!suppress)
        resHeaders['x-envoy-upstream-service-time'] = String(
          Number((process.hrtime.bigint() - start) / 1000000n),
        );
      weighted?.responseMutations.apply(resHeaders, fctx);
      cb.streamInfo.responseCodeDetails = 'via_upstream';
    };

    if (cluster.config.protocol === 'http2') this.sendHttp2(cluster, host, h, onResponse);
    else this.sendHttp1(cluster, host, h, onResponse);

    cb.onDownstreamReset(() => this.abortUpstream());
    const body = cb.requestBody;
    const startTimer = () => {
      if (timeoutMs > 0 && !this.responseStarted && !this.done) {
        this.timer = setTimeout(() => this.onTimeout(), timeoutMs);
      }
    };
    if (body.readableEnded) startTimer();
    else body.once('end', startTimer);
  }

  private sendHttp1(
    cluster: Cluster,
    host: Host,
    h: Headers,
    onResponse: (s: number, h: Headers) => void,
  ): void {
    const cb = this.cb;
    const out: http.OutgoingHttpHeaders = {};
    for (const k in h) if (k.charCodeAt(0) !== 58 /* ':' */) out[k] = h[k];
    out.host = h[':authority'] as string;
    const req = http.request({
      agent: cluster.pools.http1Agent(host),
      host: host.address,
      port: host.port,
      method: h[':method'] as string,
      path: h[':path'] as string,
      headers: out,
      setHost: false,
    });
    this.upstreamReq = req;
    let connected = false;
    req.on('socket', (s) => {
      if (!s.connecting) {
        connected = true;
        return;
      }
      const t = setTimeout(() => {
        const e = new Error('connect timeout') as NodeJS.ErrnoException;
        e.code = 'HERALD_CONNECT_TIMEOUT';
        req.destroy(e);
      }, cluster.config.connectTimeoutMs);
      s.once('connect', () => {
        connected = true;
        clearTimeout(t);
      });
      s.once('close', () => clearTimeout(t));
    });
    req.on('response', (res) => {
      const headers = res.headers as Headers;
      onResponse(res.statusCode ?? 502, headers);
      const noBody =
        cb.requestHeaders[':method'] === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
      cb.encodeHeaders(res.statusCode ?? 502, headers, noBody && res.readableEnded);
      this.pipeResponse(res, () =>
        Object.keys(res.trailers).length ? (res.trailers as Headers) : undefined,
      );
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (this.done) return;
      if (!connected || isConnectError(err.code)) this.onUpstreamFailure('connection_failure', err.code);
      else this.onUpstreamFailure('connection_termination', err.code);
    });
    cb.requestBody.pipe(req);
  }

  private sendHttp2(
    cluster: Cluster,
    host: Host,
    h: Headers,
    onResponse: (s: number, h: Headers) => void,
  ): void {
    const cb = this.cb;
    let session: http2.ClientHttp2Session;
    try {
      session = cluster.pools.http2Session(host);
    } catch {
      this.onUpstreamFailure('connection_failure', undefined);
      return;
    }
    const out: http2.OutgoingHttpHeaders = {};
    for (const k in h) if (k !== ':scheme') out[k] = h[k];
    out[':scheme'] = 'http';
    const connected = !session.connecting;
    let connectTimer: NodeJS.Timeout | undefined;
    if (!connected) {
      connectTimer = setTimeout(() => {
        session.destroy();
        this.onUpstreamFailure('connection_failure', 'HERALD_CONNECT_TIMEOUT');
      }, cluster.config.connectTimeoutMs);
      session.once('connect', () => clearTimeout(connectTimer));
    }
    const stream = session.request(out, { endStream: false });
    this.upstreamReq = stream;
    let gotResponse = false;
    stream.on('response', (headers) => {
      gotResponse = true;
      const status = Number(headers[':status'] ?? 502);
      const resHeaders: Headers = {};
      for (const k in headers) if (k.charCodeAt(0) !== 58) resHeaders[k] = headers[k] as string;
      onResponse(status, resHeaders);
      cb.encodeHeaders(status, resHeaders, false);
      let trailers: Headers | undefined;
      stream.once('trailers', (t) => {
        trailers = {};
        for (const k in t) if (k.charCodeAt(0) !== 58) trailers[k] = t[k] as string;
      });
      this.pipeResponse(stream, () => trailers);
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      if (this.done) return;
      if (session.connecting || err.code === 'ECONNREFUSED')
        this.onUpstreamFailure('connection_failure', err.code);
      else this.onUpstreamFailure(gotResponse ? 'remote_reset' : 'remote_reset', err.code);
    });
    stream.on('close', () => {
      clearTimeout(connectTimer);
      if (!gotResponse && !this.done) {
        const code = stream.rstCode;
        this.onUpstreamFailure(
          session.destroyed && !session.connecting ? 'connection_termination' : 'remote_reset',
          `rst ${code}`,
        );
      }
    });
    cb.requestBody.pipe(stream);
  }

  /** Streams an upstream body to the client, pausing the upstream while the client is slow. */
  private pipeResponse(
    src: NodeJS.ReadableStream & { destroy?(): void },
    trailers: () => Headers | undefined,
  ): void {
    const cb = this.cb;
    src.on('data', (chunk: Buffer) => {
      if (!cb.encodeData(chunk, false)) {
        src.pause();
        cb.onDownstreamDrain(() => src.resume());
      }
    });
    src.on('end', () => {
      this.finish();
      const t = trailers();
      if (t) cb.encodeTrailers(t);
      else cb.encodeData(Buffer.alloc(0), true);
    });
  }

  private onTimeout(): void {
    if (this.done) return;
    this.cluster?.stats.upstream_rq_timeout.inc();
    this.abortUpstream();
    this.finish();
    this.cb.sendLocalReply(504, 'upstream request timeout', {
      details: 'upstream_response_timeout',
      flags: ResponseFlag.UT,
    });
  }

  private onUpstreamFailure(reason: ResetReason, code: string | undefined): void {
    if (this.done) return;
    const stats = this.cluster?.stats;
    const flag =
      reason === 'connection_failure'
        ? ResponseFlag.UF
        : reason === 'connection_termination'
          ? ResponseFlag.UC
          : reason === 'overflow'
            ? ResponseFlag.UO
            : ResponseFlag.UR;
    if (reason === 'connection_failure') {
      stats?.upstream_cx_connect_fail.inc();
      if (code === 'HERALD_CONNECT_TIMEOUT') stats?.upstream_cx_connect_timeout.inc();
    } else if (reason === 'connection_termination') {
      stats?.upstream_cx_destroy_remote_with_active_rq.inc();
    }
    this.finish();
    if (this.responseStarted) {
      this.cb.streamInfo.setFlag(flag);
      this.cb.resetStream();
      return;
    }
    this.cb.sendLocalReply(503, RESET_BEFORE_HEADERS + reason.replace('_', ' '), {
      details: `upstream_reset_before_response_started{${reason}}`,
      flags: flag,
    });
  }

  private abortUpstream(): void {
    const r = this.upstreamReq;
    if (!r) return;
    if (r instanceof http.ClientRequest) r.destroy();
    else if (!r.destroyed) r.close(8 /* CANCEL */);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
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
