// One request/response exchange on the HTTP connection manager: runs the
// decoder filters in order and the encoder filters in reverse, and writes the
// response to the codec (Herald's HTTP/1 or Node's HTTP/2, behind ServerStream).

import { Level, logger } from '../common/logger.js';
import type { FormatContext, Headers } from '../common/substitution-formatter.js';
import { StreamTimer, timerMs } from '../common/timers.js';
import type { Route, RouteTable, VirtualHost } from '../router/route-config.js';
import type { BodySource, ServerStream } from './codec.js';
import type { HttpConnectionManagerStats } from './conn-manager.js';
import type { ConnectionManagerConfig } from './conn-manager-config.js';
import type { HttpFilterFactory } from './filter.js';
import {
  type DecoderFilterCallbacks,
  type DownstreamInfo,
  FilterHeadersStatus,
  type HttpFilter,
  type LocalReplyOptions,
} from './filter.js';
import { localReply } from './local-reply.js';
import { ResponseFlag, StreamInfo } from './stream-info.js';

/** HTTP/1 connection-level headers that never cross a proxy (Envoy strips the same set). */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
];

const httpLog = logger('http');

/** Headers as Envoy's debug lines print them: `'name', 'value'` per line. */
export function formatHeaders(h: Headers): string {
  const out: string[] = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) out.push(`'${k}', '${x}'`);
  }
  return out.join('\n');
}

export function stripHopByHop(h: Headers): void {
  // Headers the Connection header names are hop-by-hop too (RFC 9110 7.6.1).
  const conn = h.connection;
  // The usual values name no other header: no need to tokenize them.
  if (conn !== undefined && conn !== 'keep-alive' && conn !== 'close' && conn !== 'Keep-Alive') {
    for (const t of (Array.isArray(conn) ? conn.join(',') : conn).split(',')) {
      const name = t.trim().toLowerCase();
      if (
        name &&
        name !== 'close' &&
        name !== 'keep-alive' &&
        name !== 'upgrade' &&
        name !== 'te' &&
        name.charCodeAt(0) !== 58
      )
        delete h[name];
    }
  }
  for (const k of HOP_BY_HOP) if (h[k] !== undefined) delete h[k];
  const te = h.te;
  // TE is hop-by-hop too, except "trailers", which gRPC needs end to end.
  if (te !== undefined) {
    if (typeof te === 'string' && te.toLowerCase().includes('trailers')) h.te = 'trailers';
    else delete h.te;
  }
}

interface PendingResponse {
  status: number;
  headers: Headers;
  endStream: boolean;
  body?: Buffer;
}

export class ActiveStream implements DecoderFilterCallbacks {
  /** For `[C<id>][S<id>]` debug lines; set by the connection manager. */
  connectionId = 0;
  streamId = 0;
  readonly streamInfo = new StreamInfo();
  readonly requestHeaders: Headers;
  private readonly filters: HttpFilter[];
  private decodeIndex = 0;
  private encodeIndex = 0;
  private cachedRoute: { vhost: VirtualHost; route: Route } | undefined | null = null;
  private pendingResponse: PendingResponse | undefined;
  private headersSent = false;
  private done = false;
  private resetCallbacks: Array<() => void> = [];
  private responseHeaders: Headers | undefined;
  private responseTrailers: Headers | undefined;
  private readonly idleTimer = new StreamTimer(() => this.onIdleTimeout());
  /** Set by the connection manager for upgrade requests (WebSocket). */
  upgradeType: string | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private durationTimer: NodeJS.Timeout | undefined;
  private readonly table: RouteTable;
  private readonly factories: HttpFilterFactory[];

  constructor(
    readonly config: ConnectionManagerConfig,
    readonly stream: ServerStream,
    readonly downstream: DownstreamInfo,
    private readonly stats: HttpConnectionManagerStats,
    private readonly onComplete: (s: ActiveStream) => void,
    /** An upgrade (e.g. websocket) whose upgrade_configs entry has its own filter chain uses it. */
    upgradeType?: string,
  ) {
    this.requestHeaders = stream.headers;
    // RDS may replace the table; this stream keeps the one it started with.
    this.table = config.routeTable;
    this.factories =
      (upgradeType !== undefined ? config.upgradeFilters.get(upgradeType) : undefined) ??
      config.filterFactories;
    this.filters = this.factories.map((f) => f.createFilter(config.filterContext));
    for (const f of this.filters) {
      f.setDecoderFilterCallbacks?.(this);
      f.setEncoderFilterCallbacks?.(this);
    }
    this.setStreamIdleTimeout(config.streamIdleTimeoutMs);
    if (config.maxStreamDurationMs > 0)
      this.durationTimer = setTimeout(
        () => this.onMaxDuration(),
        timerMs(config.maxStreamDurationMs),
      ).unref();
    if (config.requestTimeoutMs > 0 && !stream.body.ended)
      this.requestTimer = setTimeout(() => this.onRequestTimeout(), timerMs(config.requestTimeoutMs)).unref();
    if (stream.body.ended) this.streamInfo.lastRequestByteMs = this.streamInfo.elapsedMs();
    stream.body.observer = this;
    stream.owner = this;
  }

  onBodyActivity(): void {
    this.idleTimer.refresh();
  }

  onBodyEnd(): void {
    clearTimeout(this.requestTimer);
    this.idleTimer.refresh();
    this.streamInfo.lastRequestByteMs = this.streamInfo.elapsedMs();
  }

  /** The codec's stream ended: `complete` false when the client went away first. */
  onStreamClose(complete: boolean): void {
    this.idleTimer.disarm();
    clearTimeout(this.requestTimer);
    clearTimeout(this.durationTimer);
    if (!complete && !this.done) {
      this.streamInfo.setFlag(ResponseFlag.DC);
      for (const cb of this.resetCallbacks) cb();
    }
    this.done = true;
    this.streamInfo.bytesReceived = this.stream.body.bytes;
    this.streamInfo.lastResponseByteMs = this.streamInfo.elapsedMs();
    const loggers = this.config.accessLoggers;
    if (loggers.length) {
      const c = this.formatContext(this.responseHeaders);
      c.responseTrailers = this.responseTrailers;
      for (const l of loggers) l.log(c);
    }
    for (const f of this.filters) f.onDestroy?.();
    this.onComplete(this);
  }

  /** Envoy's stream idle timeout (a route's idle_timeout overrides the HCM's); 0 disables it. */
  setStreamIdleTimeout(ms: number): void {
    this.idleTimer.arm(ms);
  }

  private onIdleTimeout(): void {
    this.stats.downstream_rq_idle_timeout.inc();
    this.abortFilters();
    this.sendLocalReply(408, 'stream timeout', { details: 'stream_idle_timeout', flags: ResponseFlag.SI });
  }

  private onMaxDuration(): void {
    if (this.done) return;
    this.stats.downstream_rq_max_duration_reached.inc();
    this.abortFilters();
    this.sendLocalReply(408, 'downstream duration timeout', {
      details: 'max_duration_timeout',
      flags: ResponseFlag.DT,
    });
  }

  private onRequestTimeout(): void {
    this.stats.downstream_rq_timeout.inc();
    this.abortFilters();
    this.sendLocalReply(408, 'request timeout', { details: 'request_overall_timeout' });
  }

  /** Tells filters (the router) that the stream is being torn down by Herald itself. */
  private abortFilters(): void {
    const cbs = this.resetCallbacks;
    this.resetCallbacks = [];
    for (const cb of cbs) cb();
  }

  get hcmUpgrades(): ReadonlyMap<string, boolean> {
    return this.config.upgrades;
  }

  get hcmStats(): HttpConnectionManagerStats {
    return this.stats;
  }

  get routeTable(): RouteTable {
    return this.table;
  }

  get requestBody(): BodySource {
    return this.bodyOverride ?? this.stream.body;
  }

  private bodyOverride: BodySource | undefined;

  replaceRequestBody(body: BodySource): void {
    this.bodyOverride = body;
  }

  formatContext(responseHeaders?: Headers): FormatContext {
    const d = this.downstream;
    return {
      info: this.streamInfo,
      requestHeaders: this.requestHeaders,
      responseHeaders,
      protocol: d.protocol,
      remoteAddress: d.remoteAddress,
      remotePort: d.remotePort,
      directRemoteAddress: d.directRemoteAddress,
      directRemotePort: d.directRemotePort,
      localAddress: d.localAddress,
      localPort: d.localPort,
    };
  }

  route(): { vhost: VirtualHost; route: Route } | undefined {
    if (this.cachedRoute === null) {
      const h = this.requestHeaders;
      const fullPath = (h[':path'] as string | undefined) ?? '/';
      let q = fullPath.indexOf('?');
      const hash = fullPath.indexOf('#');
      if (hash >= 0 && (q < 0 || hash < q)) q = hash;
      const path = q < 0 ? fullPath : fullPath.slice(0, q);
      let query = '';
      if (q >= 0 && fullPath.charCodeAt(q) === 63 /* '?' */) {
        const end = fullPath.indexOf('#', q);
        query = fullPath.slice(q + 1, end < 0 ? undefined : end);
      }
      this.cachedRoute = this.table.route((h[':authority'] as string | undefined) ?? '', {
        path: path || '/',
        query,
        headers: h,
      });
      if (this.cachedRoute) this.streamInfo.routeName = this.cachedRoute.route.name;
    }
    return this.cachedRoute;
  }

  clearRouteCache(): void {
    this.cachedRoute = null;
  }

  private perFilterEntry(filterName: string): { config: unknown; disabled: boolean } | undefined {
    const r = this.route();
    return (
      r?.route.perFilterConfig?.get(filterName) ??
      r?.vhost.perFilterConfig?.get(filterName) ??
      this.table.perFilterConfig?.get(filterName)
    );
  }

  perFilterConfig<T>(filterName: string): T | undefined {
    return this.perFilterEntry(filterName)?.config as T | undefined;
  }

  start(): void {
    this.continueDecoding();
  }

  continueDecoding(): void {
    const endStream = this.stream.body.ended && this.stream.body.bytes === 0;
    while (this.decodeIndex < this.filters.length) {
      const i = this.decodeIndex++;
      const f = this.filters[i]!;
      if (!f.decodeHeaders || this.disabledForRoute(i)) continue;
      if (f.decodeHeaders(this.requestHeaders, endStream) === FilterHeadersStatus.StopIteration) return;
      if (this.headersSent) return;
    }
  }

  /** A non-terminal filter the route turns off (FilterConfig.disabled), or one off by default that it does not turn on. */
  private disabledForRoute(i: number): boolean {
    const factory = this.factories[i]!;
    if (factory.terminal || !factory.configName) return false;
    const e = this.perFilterEntry(factory.configName);
    return e ? e.disabled : (factory.disabledByDefault ?? false);
  }

  encodeHeaders(status: number, headers: Headers, endStream: boolean): void {
    this.pendingResponse = { status, headers, endStream };
    this.encodeIndex = this.filters.length;
    this.continueEncoding();
  }

  continueEncoding(): void {
    const p = this.pendingResponse;
    if (!p) return;
    while (this.encodeIndex > 0) {
      const f = this.filters[--this.encodeIndex]!;
      if (!f.encodeHeaders) continue;
      if (f.encodeHeaders(p.status, p.headers, p.endStream) === FilterHeadersStatus.StopIteration) return;
    }
    this.pendingResponse = undefined;
    this.writeHeaders(p);
  }

  private writeHeaders(p: PendingResponse): void {
    if (this.headersSent || this.done) return;
    this.headersSent = true;
    this.streamInfo.firstResponseByteMs = this.streamInfo.elapsedMs();
    this.responseHeaders = p.headers;
    this.idleTimer.refresh();
    this.streamInfo.responseCode = p.status;
    const cfg = this.config;
    const headers = p.headers;
    // response_headers_to_add/remove: route, virtual host, route config (most specific first).
    const r = this.cachedRoute;
    // The format context is built only when some level has mutations (most routes have none).
    if (
      (r && (!r.route.responseMutations.empty || !r.vhost.responseMutations.empty)) ||
      !this.table.responseMutations.empty
    ) {
      const ctx = this.formatContext(headers);
      if (r) {
        r.route.responseMutations.apply(headers, ctx);
        r.vhost.responseMutations.apply(headers, ctx);
      }
      this.table.responseMutations.apply(headers, ctx);
    }
    if (cfg.serverHeaderTransformation === 'OVERWRITE') headers.server = cfg.serverName;
    else if (cfg.serverHeaderTransformation === 'APPEND_IF_ABSENT' && headers.server === undefined)
      headers.server = cfg.serverName;
    const sink = this.stream.response;
    if (httpLog.on(Level.debug))
      httpLog.debug(
        `[C${this.connectionId}][S${this.streamId}] encoding headers via codec (end_stream=${p.endStream || (p.body !== undefined && p.body.length === 0)}):\n':status', '${p.status}'\n${formatHeaders(headers)}`,
      );
    if (p.body) {
      if (p.body.length) {
        sink.writeHeaders(p.status, headers, false);
        sink.writeData(p.body, true);
      } else sink.writeHeaders(p.status, headers, true);
    } else sink.writeHeaders(p.status, headers, p.endStream);
  }

  encodeData(chunk: Buffer, endStream: boolean): boolean {
    this.streamInfo.bytesSent += chunk.length;
    this.idleTimer.refresh();
    return this.stream.response.writeData(chunk, endStream);
  }

  encodeTrailers(trailers: Headers): void {
    this.responseTrailers = trailers;
    this.stream.response.writeTrailers(trailers);
  }

  onDownstreamDrain(cb: () => void): void {
    this.stream.response.onDrain(cb);
  }

  onDownstreamReset(cb: () => void): void {
    this.resetCallbacks.push(cb);
  }

  resetStream(): void {
    this.stream.response.reset();
  }

  sendLocalReply(status: number, body: string, opts: LocalReplyOptions): void {
    if (opts.flags) this.streamInfo.setFlag(opts.flags);
    this.streamInfo.responseCodeDetails = opts.details;
    if (this.headersSent) {
      // Too late for a reply: the client has a partial response. Reset it.
      this.resetStream();
      return;
    }
    const reply = localReply(status, body, this.requestHeaders, opts);
    this.streamInfo.bytesSent += reply.body.length;
    // Decoding stops here; the reply goes through the encoder filters like any response (as in Envoy).
    this.decodeIndex = this.filters.length;
    this.pendingResponse = {
      status: reply.status,
      headers: reply.headers,
      endStream: true,
      body: reply.body,
    };
    this.encodeIndex = this.filters.length;
    this.continueEncoding();
  }
}
