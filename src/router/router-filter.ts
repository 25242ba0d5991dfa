// envoy.filters.http.router: the terminal HTTP filter. Picks the route's
// cluster and a host, sends the request upstream on a pooled connection,
// streams the response back with backpressure, and turns failures into
// Envoy's local replies and response flags.

import { monotonicNow } from '../common/clock.js';
import type { Headers } from '../common/substitution-formatter.js';
import { StreamTimer, timerMs } from '../common/timers.js';
import type { ExtensionFactory } from '../extensions/registry.js';
import { stripHopByHop } from '../http/active-stream.js';
import type { BodySource } from '../http/codec.js';
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
import type { LoadBalancerContext } from '../upstream/lb/load-balancer.js';
import type { ResourceManager, ResourcePriority } from '../upstream/resource-manager.js';
import { tcpTunnelPool } from '../upstream/tcp-upstream.js';
import type { ResetReason, UpstreamCallbacks, UpstreamRequest } from '../upstream/upstream-request.js';
import { formatSetCookie } from './hash-policy.js';
import { RetryState, STRICT_CHECKABLE_HEADERS, validControlHeader } from './retry-policy.js';

/**
 * One try of the request on one host. It is also the upstream request's callbacks (methods,
 * not closures: no per-request function objects on the hot path).
 */
class Attempt implements UpstreamCallbacks {
  /** Set once the pool returns it: a reset from inside newStream() finds it still unset (see abortAttempt). */
  req!: UpstreamRequest;
  /** When the attempt started (common/clock). */
  readonly start = monotonicNow();
  perTryTimer: NodeJS.Timeout | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  ended = false;

  constructor(
    private readonly router: RouterFilter,
    readonly host: Host,
  ) {}

  onHeaders(status: number, headers: Headers, endStream: boolean): void {
    this.router.onAttemptHeaders(this, status, headers, endStream);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    if (!this.ended) this.router.onAttemptData(this, chunk, endStream);
  }

  onTrailers(trailers: Headers): void {
    if (!this.ended) this.router.onAttemptTrailers(this, trailers);
  }

  onReset(reason: ResetReason, detail: string): void {
    this.router.onAttemptReset(this, reason, detail);
  }
}

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
  /** strict_check_headers: control headers whose values must be valid (else 400 IH). */
  strictCheckHeaders: string[];
}

class RouterFilter implements HttpFilter {
  private cb!: DecoderFilterCallbacks;
  private cluster: Cluster | undefined;
  private vhost: VirtualHost | undefined;
  private weighted: WeightedClusterEntry | undefined;
  private resources: ResourceManager | undefined;
  private priority: ResourcePriority = 'DEFAULT';
  private lbContext: LoadBalancerContext | undefined;
  /** The request as sent upstream (after rewrites and mutations). */
  private upstreamHeaders: Headers | undefined;
  private autoHostRewrite = false;
  private headersOnly = false;
  private retry: RetryState | undefined;
  /** The attempt in flight; undefined while waiting to retry. */
  private attempt: Attempt | undefined;
  private attempts = 0;
  private tried: Host[] | undefined;
  /** Request body kept for retries (undefined when retries are off or the body outgrew the limit). */
  private buffered: Buffer[] | undefined;
  private bufferedBytes = 0;
  private bufferLimit = 0;
  private bodyEnded = false;
  private bodyTrailers: Headers | undefined;
  private bodyPausedFor: Attempt | undefined;
  private requestComplete = false;
  private timeoutMs = 0;
  private perTryTimeoutMs = 0;
  private readonly globalTimer = new StreamTimer(() => this.onGlobalTimeout());
  private lastTransportFailure = '';
  private upstreamRequestStarted = false;
  /** Response headers went to the client: no retry and no local reply any more. */
  private responseStarted = false;
  /** A hash-policy cookie Herald generated, to set on the response. */
  private setCookie: string | undefined;
  private done = false;
  /** Counted in downstream_cx_upgrades_active until the stream ends. */
  private upgradeActive = false;
  /** CONNECT terminated here (route connect_config): the payload goes to the host as raw TCP. */
  private tcpTunnel = false;
  /** A proxied CONNECT's payload waits for the upstream's 2xx (Envoy's paused_for_connect). */
  private bodyAfterConnect: (() => void) | undefined;

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
    // Envoy decides an upgrade before routing: without a proxying route to allow it, only the
    // HCM's upgrade_configs can (so a CONNECT with nowhere to go is still 403 by default).
    const upgradeType = cb.upgradeType;
    if (
      upgradeType !== undefined &&
      matched?.route.action.kind !== 'route' &&
      !(cb.hcmUpgrades.get(upgradeType) ?? false)
    ) {
      cb.sendLocalReply(403, '', { details: 'upgrade_failed' });
      return FilterHeadersStatus.StopIteration;
    }
    if (!matched) {
      cb.hcmStats.no_route.inc();
      cb.sendLocalReply(404, '', { details: 'route_not_found', flags: ResponseFlag.NR });
      return FilterHeadersStatus.StopIteration;
    }
    const { route, vhost } = matched;
    const action = route.action;
    for (const name of this.config.strictCheckHeaders) {
      const v = headers[name];
      if (typeof v === 'string' && !validControlHeader(name, v)) {
        cb.sendLocalReply(400, `invalid header '${name}' with value '${v}'`, {
          details: `request_headers_failed_strict_check{${name}}`,
          flags: ResponseFlag.IH,
        });
        return FilterHeadersStatus.StopIteration;
      }
    }
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
      cb.hcmStats.downstream_cx_upgrades_active.inc();
      this.upgradeActive = true;
    }
    // connect_config: CONNECT (and POST, with allow_post) is terminated here, as Envoy's TCP upstream.
    const method = headers[':method'];
    const cc = action.connectConfig;
    this.tcpTunnel =
      cc !== undefined &&
      (method === 'CONNECT' || (cc.allowPost && method === 'POST' && upgrade === undefined));
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
    if (hashKey !== undefined) this.lbContext = { hashKey };
    if (action.idleTimeoutMs !== undefined) cb.setStreamIdleTimeout(action.idleTimeoutMs);
    this.sendUpstream(route, vhost, action, weighted, cluster, headers);
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
    h: Headers,
  ): void {
    const cb = this.cb;
    const suppress = this.config.suppressEnvoyHeaders;
    // A terminated POST is a tunnel too: its body is the payload, not a request to retry.
    const upgrade = cb.upgradeType !== undefined || this.tcpTunnel;
    this.vhost = vhost;
    this.weighted = weighted;
    this.resources = cluster.resources[action.priority];
    this.priority = action.priority;

    // Retries: the route's policy, else the virtual host's, merged with x-envoy-retry-* headers.
    // An upgrade is never retried: its body is a tunnel.
    const retry = upgrade
      ? undefined
      : RetryState.create(action.retryPolicy ?? vhost.retryPolicy, cluster, this.resources, h);
    this.retry = retry;

    // Timeouts: the route's, unless the client asked for others (x-envoy-upstream-rq-*-timeout-ms).
    let timeoutMs = action.timeoutMs;
    const hdrTimeout = h['x-envoy-upstream-rq-timeout-ms'];
    if (typeof hdrTimeout === 'string' && /^\d+$/.test(hdrTimeout)) timeoutMs = Number(hdrTimeout);
    if (h['x-envoy-upstream-rq-timeout-ms'] !== undefined) delete h['x-envoy-upstream-rq-timeout-ms'];
    let perTryMs = retry?.perTryTimeoutMs ?? 0;
    const hdrPerTry = h['x-envoy-upstream-rq-per-try-timeout-ms'];
    if (typeof hdrPerTry === 'string' && /^\d+$/.test(hdrPerTry)) perTryMs = Number(hdrPerTry);
    if (h['x-envoy-upstream-rq-per-try-timeout-ms'] !== undefined)
      delete h['x-envoy-upstream-rq-per-try-timeout-ms'];
    // A per-try timeout at or above the global one is ignored (Envoy).
    if (timeoutMs > 0 && perTryMs >= timeoutMs) perTryMs = 0;
    this.timeoutMs = timeoutMs;
    this.perTryTimeoutMs = perTryMs;
    const expected = perTryMs > 0 ? perTryMs : timeoutMs;
    if (expected > 0 && !suppress) h['x-envoy-expected-rq-timeout-ms'] = String(expected);

    // Path and host rewrites.
    const fullPath = (h[':path'] as string | undefined) ?? '/';
    if ((action.prefixRewrite !== undefined || action.regexRewrite) && h[':path'] !== undefined) {
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
    else if (action.hostRewriteHeader !== undefined) {
      const v = h[action.hostRewriteHeader];
      if (typeof v === 'string' && v) h[':authority'] = v;
    }
    this.autoHostRewrite = action.autoHostRewrite && action.hostRewriteLiteral === undefined;

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
    this.upstreamHeaders = h;

    const body = cb.requestBody;
    this.headersOnly = !upgrade && body.ended && body.bytes === 0;
    if (retry && !this.headersOnly) {
      // Kept for a retry up to the buffer limit; past it the request can no longer be retried.
      this.buffered = [];
      this.bufferLimit = vhost.perRequestBufferLimitBytes ?? cb.downstream.bufferLimit;
    }
    cb.onDownstreamReset(() => this.onDownstreamReset());
    if (!this.startAttempt()) return;
    const shadows =
      action.mirrors && !this.tcpTunnel
        ? this.startShadows(action, h, this.headersOnly, timeoutMs)
        : undefined;

    if (this.headersOnly) {
      body.discard();
      this.onRequestComplete();
      return;
    }
    // An upgrade request is complete at its headers; what follows is the tunnel.
    if (upgrade) this.onRequestComplete();
    // Stream the request body with backpressure both ways.
    this.consumeBody(
      body,
      (chunk) => {
        if (this.done) return;
        if (shadows) for (const sh of shadows) sh.sendData(chunk, false);
        if (this.buffered) this.bufferForRetry(chunk);
        const a = this.attempt;
        if (a && !a.req.sendData(chunk, false)) this.waitForDrain(a);
      },
      (trailers) => {
        if (this.done) return;
        this.bodyEnded = true;
        this.bodyTrailers = trailers;
        const a = this.attempt;
        if (a) {
          if (trailers) a.req.sendTrailers(trailers);
          else a.req.sendData(EMPTY, true);
        }
        if (shadows)
          for (const sh of shadows) trailers ? sh.sendTrailers(trailers) : sh.sendData(EMPTY, true);
        if (!upgrade) this.onRequestComplete();
      },
    );
  }

  /** A proxied CONNECT's payload waits for the upstream's 2xx (Envoy's paused_for_connect). */
  private consumeBody(
    body: BodySource,
    onData: (chunk: Buffer) => void,
    onEnd: (trailers: Headers | undefined) => void,
  ): void {
    if (this.cb.upgradeType === 'connect' && !this.tcpTunnel)
      this.bodyAfterConnect = () => body.consume(onData, onEnd);
    else body.consume(onData, onEnd);
  }

  /** The body is read no faster than the current attempt takes it. */
  private waitForDrain(a: Attempt): void {
    const body = this.cb.requestBody;
    body.pause();
    this.bodyPausedFor = a;
    a.req.onDrain(() => {
      if (this.bodyPausedFor !== a) return;
      this.bodyPausedFor = undefined;
      body.resume();
    });
  }

  private bufferForRetry(chunk: Buffer): void {
    if (this.bufferedBytes + chunk.length > this.bufferLimit) {
      // Envoy's retry_or_shadow_abandoned: the body no longer fits, so it cannot be replayed.
      this.buffered = undefined;
      this.retry?.release();
      this.retry = undefined;
      this.cluster?.stats.retry_or_shadow_abandoned.inc();
      if (!this.attempt && !this.done) {
        // Waiting to retry, and the retry can no longer be sent.
        this.finish();
        this.cb.sendLocalReply(507, 'exceeded request buffer limit while retrying upstream', {
          details: 'request_payload_exceeded_retry_buffer_limit',
        });
      }
      return;
    }
    // Copied: the codec's chunk may be a view of a buffer it reuses.
    this.buffered!.push(Buffer.from(chunk));
    this.bufferedBytes += chunk.length;
  }

  /** Picks a host (avoiding tried ones when asked) and sends one attempt; false when none could start. */
  private startAttempt(): boolean {
    const cb = this.cb;
    const cluster = this.cluster!;
    const retry = this.retry;
    let host = cluster.chooseHost(this.lbContext);
    if (host && retry?.previousHosts && this.tried) {
      for (let i = 0; i < retry.hostSelectionMaxAttempts && this.tried.includes(host); i++) {
        const next = cluster.chooseHost(this.lbContext);
        if (!next) break;
        host = next;
      }
    }
    if (!host) {
      cluster.stats.upstream_cx_none_healthy.inc();
      this.finish();
      cb.sendLocalReply(503, 'no healthy upstream', {
        details: 'no_healthy_upstream',
        flags: ResponseFlag.UH,
      });
      return false;
    }
    (this.tried ??= []).push(host);
    const attemptNo = ++this.attempts;
    cb.streamInfo.attemptCount = attemptNo;
    cb.streamInfo.upstreamHost = host.addressString;
    const h = this.upstreamHeaders!;
    if (this.autoHostRewrite && host.hostname) h[':authority'] = host.hostname;
    if (this.vhost?.includeRequestAttemptCount) h['x-envoy-attempt-count'] = String(attemptNo);
    cluster.stats.upstream_rq_total.inc();
    cluster.stats.upstream_rq_active.inc();
    host.activeRequests++;
    const a = new Attempt(this, host);
    this.attempt = a;
    const upgrade = cb.upgradeType !== undefined;
    // A terminated CONNECT goes to the host as raw TCP instead of through an HTTP pool.
    const pool = this.tcpTunnel
      ? tcpTunnelPool(cluster, host, this.priority)
      : cluster.pools.forHost(host, cb.downstream.protocol === 'HTTP/2', this.priority);
    const req = pool.newStream(
      h,
      { endStream: this.headersOnly, upgrade, connectTimeoutMs: cluster.config.connectTimeoutMs },
      a,
    );
    a.req = req;
    if (attemptNo > 1 && !this.headersOnly) this.replayBody(a);
    if (this.requestComplete) this.armPerTryTimers(a);
    return true;
  }

  /** A retry re-sends what the client has sent so far; the rest streams on as it arrives. */
  private replayBody(a: Attempt): void {
    let ok = true;
    for (const c of this.buffered ?? []) ok = a.req.sendData(c, false);
    if (this.bodyEnded) {
      if (this.bodyTrailers) a.req.sendTrailers(this.bodyTrailers);
      else a.req.sendData(EMPTY, true);
    }
    if (this.bodyPausedFor) {
      // The body was waiting on the failed attempt: now it waits on this one.
      if (ok) {
        this.bodyPausedFor = undefined;
        this.cb.requestBody.resume();
      } else this.waitForDrain(a);
    } else if (!ok && !this.bodyEnded) this.waitForDrain(a);
  }

  /** The whole request has been received: the route timeout starts (Envoy's rule). */
  private onRequestComplete(): void {
    this.requestComplete = true;
    if (this.timeoutMs > 0 && !this.done) this.globalTimer.arm(this.timeoutMs);
    if (this.attempt) this.armPerTryTimers(this.attempt);
  }

  private armPerTryTimers(a: Attempt): void {
    if (this.perTryTimeoutMs > 0 && !a.perTryTimer)
      a.perTryTimer = setTimeout(() => this.onPerTryTimeout(a, false), timerMs(this.perTryTimeoutMs));
    const idle = this.retry?.perTryIdleTimeoutMs ?? 0;
    if (idle > 0 && !a.idleTimer)
      a.idleTimer = setTimeout(() => this.onPerTryTimeout(a, true), timerMs(idle));
  }

  onAttemptData(a: Attempt, chunk: Buffer, end: boolean): void {
    a.idleTimer?.refresh();
    if (end) this.onAttemptComplete(a);
    const cb = this.cb;
    if (!cb.encodeData(chunk, end) && !end) {
      a.req.pauseResponse();
      cb.onDownstreamDrain(() => a.req.resumeResponse());
    }
  }

  onAttemptTrailers(a: Attempt, trailers: Headers): void {
    this.onAttemptComplete(a);
    this.cb.encodeTrailers(trailers);
  }

  onAttemptHeaders(a: Attempt, status: number, resHeaders: Headers, end: boolean): void {
    if (a.ended || this.done) return;
    const cb = this.cb;
    const cluster = this.cluster!;
    const upgrade = cb.upgradeType !== undefined;
    a.idleTimer?.refresh();
    cb.streamInfo.upstreamConnection = a.req;
    cluster.stats.responseCode(status);
    a.host.outlier?.putHttpResponseCode(status);
    // An upstream that says it is failing its health checks is taken out at once (Envoy).
    if (resHeaders['x-envoy-immediate-health-check-fail'] !== undefined)
      a.host.healthChecker?.setUnhealthy('IMMEDIATE_HEALTH_CHECK_FAIL');
    const elapsedMs = Math.floor(monotonicNow() - a.start);
    a.host.outlier?.putResponseTimeMs(elapsedMs);
    const retry = this.retry;
    if (retry && !(upgrade && status === 101)) {
      const st = retry.shouldRetry(retry.wouldRetryFromHeaders(status, resHeaders), () => this.doRetry());
      if (st === 'yes') {
        // The answer is discarded and the attempt reset; the retry follows after the back-off.
        this.endAttempt(a);
        a.req?.abort(); // unset while newStream() is still running
        return;
      }
      if (st === 'limit_exceeded') cb.streamInfo.setFlag(ResponseFlag.URX);
      else if (st === 'overflow') cb.streamInfo.setFlag(ResponseFlag.UO);
      this.retry = undefined;
    }
    this.responseStarted = true;
    // A 2xx to CONNECT opens the tunnel, as a 101 does an upgrade.
    const connectTunnel = status >= 200 && status < 300 && (this.tcpTunnel || cb.upgradeType === 'connect');
    if (status === 101 && upgrade) {
      // Switching protocols keeps its Connection/Upgrade headers; the tunnel has no route timeout.
      this.clearGlobalTimer();
      this.clearAttemptTimers(a);
      const u = resHeaders.upgrade;
      stripHopByHop(resHeaders);
      resHeaders.connection = 'upgrade';
      if (u !== undefined) resHeaders.upgrade = u;
    } else if (connectTunnel) {
      this.clearGlobalTimer();
      this.clearAttemptTimers(a);
      stripHopByHop(resHeaders);
    } else stripHopByHop(resHeaders);
    // The request of a tunnel is not complete, so Envoy sends no upstream service time with it.
    if (!this.config.suppressEnvoyHeaders && !connectTunnel)
      resHeaders['x-envoy-upstream-service-time'] = String(elapsedMs);
    if (this.vhost?.includeAttemptCountInResponse)
      resHeaders['x-envoy-attempt-count'] = String(this.attempts);
    const weighted = this.weighted;
    if (weighted && !weighted.responseMutations.empty)
      weighted.responseMutations.apply(resHeaders, cb.formatContext(resHeaders));
    if (this.setCookie) appendHeader(resHeaders, 'set-cookie', this.setCookie);
    cb.streamInfo.responseCodeDetails = 'via_upstream';
    if (end) this.onAttemptComplete(a);
    // A proxied CONNECT's payload goes up once the tunnel is open; refused, it is dropped.
    const held = this.bodyAfterConnect;
    this.bodyAfterConnect = undefined;
    if (held && !connectTunnel) cb.requestBody.discard();
    cb.encodeHeaders(status, resHeaders, end);
    if (held && connectTunnel && !end) held();
  }

  /** The upstream response is complete: the request is done. */
  private onAttemptComplete(a: Attempt): void {
    // Envoy's upstream_rq_time: from the upstream request's start to its complete response.
    this.cluster?.stats.upstream_rq_time.recordValue(monotonicNow() - a.start);
    this.endAttempt(a);
    this.finish();
  }

  /** Per-attempt accounting, once. */
  private endAttempt(a: Attempt): void {
    if (a.ended) return;
    a.ended = true;
    this.clearAttemptTimers(a);
    a.host.activeRequests--;
    const stats = this.cluster!.stats;
    stats.upstream_rq_active.dec();
    stats.upstream_rq_completed.inc();
    if (this.attempt === a) this.attempt = undefined;
  }

  private clearAttemptTimers(a: Attempt): void {
    clearTimeout(a.perTryTimer);
    clearTimeout(a.idleTimer);
    a.perTryTimer = undefined;
    a.idleTimer = undefined;
  }

  onAttemptReset(a: Attempt, reason: ResetReason, detail: string): void {
    if (a.ended || this.done) return;
    this.endAttempt(a);
    // Envoy reports any reset but an overflow to outlier detection as a local-origin failure
    // (connect failures are reported by the pool).
    if (reason !== 'connection_failure' && reason !== 'overflow')
      a.host.outlier?.putResult('LOCAL_ORIGIN_CONNECT_FAILED');
    this.lastTransportFailure = reason === 'connection_failure' ? transportFailure(detail) : '';
    if (this.lastTransportFailure)
      this.cb.streamInfo.upstreamTransportFailureReason = this.lastTransportFailure;
    const timedOut = reason === 'connection_failure' && detail === 'connect timeout';
    this.failAttempt(
      a,
      reason,
      reason === 'refused_stream' ? 'remote_refused_stream_reset' : timedOut ? 'connection_timeout' : reason,
    );
  }

  private onPerTryTimeout(a: Attempt, idle: boolean): void {
    if (a.ended || this.done) return;
    const stats = this.cluster!.stats;
    (idle ? stats.upstream_rq_per_try_idle_timeout : stats.upstream_rq_per_try_timeout).inc();
    a.host.outlier?.putResult('LOCAL_ORIGIN_TIMEOUT');
    this.endAttempt(a);
    a.req?.abort(); // unset while newStream() is still running
    this.failAttempt(a, 'timeout', idle ? 'upstream_per_try_idle_timeout' : 'upstream_per_try_timeout');
  }

  /** An attempt failed without a usable answer: retry it, or answer the client. */
  private failAttempt(a: Attempt, reason: ResetReason | 'timeout', details: string): void {
    const cb = this.cb;
    const flag =
      reason === 'timeout'
        ? ResponseFlag.UT
        : reason === 'connection_failure'
          ? ResponseFlag.UF
          : reason === 'connection_termination'
            ? ResponseFlag.UC
            : reason === 'overflow'
              ? ResponseFlag.UO
              : reason === 'protocol_error'
                ? ResponseFlag.UPE
                : reason === 'local_reset'
                  ? ResponseFlag.LR
                  : ResponseFlag.UR;
    if (this.responseStarted) {
      // Too late for a local reply: the client sees the stream reset.
      this.finish();
      cb.streamInfo.setFlag(flag);
      cb.resetStream();
      return;
    }
    const retry = this.retry;
    if (retry) {
      // Once any attempt has sent bytes upstream the request counts as started (Envoy's rule).
      this.upstreamRequestStarted ||= a.req.started;
      const st = retry.shouldRetry(retry.wouldRetryFromReset(reason, this.upstreamRequestStarted), () =>
        this.doRetry(),
      );
      if (st === 'yes') return;
      if (st === 'limit_exceeded') cb.streamInfo.setFlag(ResponseFlag.URX);
      else if (st === 'overflow') cb.streamInfo.setFlag(ResponseFlag.UO);
    }
    const retried = this.attempts > 1;
    this.finish();
    if (reason === 'timeout') {
      this.cluster?.stats.responseCode(504);
      cb.sendLocalReply(504, 'upstream request timeout', { details, flags: flag });
      return;
    }
    const status = reason === 'protocol_error' ? 502 : 503;
    this.cluster?.stats.responseCode(status); // Envoy charges the local reply to the cluster
    const words =
      reason === 'refused_stream'
        ? 'remote refused stream reset'
        : details === 'connection_timeout'
          ? 'connection timeout'
          : reason.replace('_', ' ');
    const transport = this.lastTransportFailure
      ? `, transport failure reason: ${this.lastTransportFailure}`
      : '';
    cb.sendLocalReply(
      status,
      `upstream connect error or disconnect/reset before headers. ${retried ? 'retried and the latest ' : ''}reset reason: ${words}${transport}`,
      {
        details: `upstream_reset_before_response_started{${details}}`,
        flags: flag,
        ...(reason === 'overflow' && !this.config.suppressEnvoyHeaders
          ? { headers: { 'x-envoy-overloaded': 'true' } }
          : {}),
      },
    );
  }

  private doRetry(): void {
    if (this.done) return;
    this.startAttempt();
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

  private onGlobalTimeout(): void {
    if (this.done) return;
    const cb = this.cb;
    this.cluster?.stats.upstream_rq_timeout.inc();
    const a = this.attempt;
    if (a) {
      a.host.outlier?.putResult('LOCAL_ORIGIN_TIMEOUT');
      this.endAttempt(a);
      a.req?.abort(); // unset while newStream() is still running
    }
    const started = this.responseStarted;
    this.finish();
    if (started) {
      cb.streamInfo.setFlag(ResponseFlag.UT);
      cb.resetStream();
      return;
    }
    this.cluster?.stats.responseCode(504); // Envoy charges the local reply to the cluster
    cb.sendLocalReply(504, 'upstream request timeout', {
      details: 'upstream_response_timeout',
      flags: ResponseFlag.UT,
    });
  }

  private onDownstreamReset(): void {
    const a = this.attempt;
    if (a) {
      this.endAttempt(a);
      a.req?.abort(); // unset while newStream() is still running
    }
    this.finish();
  }

  private clearGlobalTimer(): void {
    this.globalTimer.disarm();
  }

  /** The request is over (answered, failed or abandoned). */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.clearGlobalTimer();
    this.retry?.release();
    const a = this.attempt;
    if (a) this.endAttempt(a);
  }

  onDestroy(): void {
    if (this.upgradeActive) {
      this.upgradeActive = false;
      this.cb.hcmStats.downstream_cx_upgrades_active.dec();
    }
    if (!this.done) {
      const a = this.attempt;
      this.finish();
      a?.req.abort();
    }
  }
}

/** Envoy's transport failure text for a failed connect ("delayed connect error: <errno>"). */
const ERRNO: Record<string, number> = {
  ECONNREFUSED: 111,
  ECONNRESET: 104,
  EHOSTUNREACH: 113,
  ENETUNREACH: 101,
};
function transportFailure(detail: string): string {
  const n = ERRNO[detail];
  return n === undefined ? '' : `delayed connect error: ${n}`;
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
    const strict = r.strList('strict_check_headers');
    for (const name of strict)
      if (!STRICT_CHECKABLE_HEADERS.includes(name))
        throw r.error(
          'strict_check_headers',
          `'${name}' cannot be checked (one of ${STRICT_CHECKABLE_HEADERS.join(', ')})`,
        );
    const config: RouterConfig = {
      suppressEnvoyHeaders: r.bool('suppress_envoy_headers'),
      strictCheckHeaders: strict,
    };
    return {
      name: 'envoy.filters.http.router',
      terminal: true,
      createFilter: (ctx) => new RouterFilter(config, ctx),
    };
  },
};
