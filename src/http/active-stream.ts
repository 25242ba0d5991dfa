// One request/response exchange on the HTTP connection manager: builds
// Envoy's view of the request headers, runs the decoder filters in order and
// the encoder filters in reverse, and writes the response to the codec.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { FormatContext, Headers } from '../common/substitution-formatter.js';
import type { Route, RouteTable, VirtualHost } from '../router/route-config.js';
import type { ConnectionManagerConfig } from './conn-manager-config.js';
import {
  type DecoderFilterCallbacks,
  type DownstreamInfo,
  FilterHeadersStatus,
  type HttpFilter,
  type LocalReplyOptions,
} from './filter.js';
import { localReply } from './local-reply.js';
import { StreamInfo } from './stream-info.js';

export type DownstreamRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type DownstreamResponse = http.ServerResponse | http2.Http2ServerResponse;

/** HTTP/1 connection-level headers that never cross a proxy (Envoy strips the same set). */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
];

export function stripHopByHop(h: Headers): void {
  for (const k of HOP_BY_HOP) if (h[k] !== undefined) delete h[k];
  const te = h.te;
  // TE is hop-by-hop too, except "trailers", which gRPC needs end to end.
  if (te !== undefined) {
    if (typeof te === 'string' && te.toLowerCase().includes('trailers')) h.te = 'trailers';
    else delete h.te;
  }
}

export class ActiveStream implements DecoderFilterCallbacks {
  readonly streamInfo = new StreamInfo();
  readonly requestHeaders: Headers;
  readonly downstream: DownstreamInfo;
  private readonly filters: HttpFilter[];
  private decodeIndex = 0;
  private encodeIndex = 0;
  private cachedRoute: { vhost: VirtualHost; route: Route } | undefined | null = null;
  private pendingResponse:
    | { status: number; headers: Headers; endStream: boolean; body?: Buffer }
    | undefined;
  private headersSent = false;
  private complete = false;
  private resetCallbacks: Array<() => void> = [];

  constructor(
    readonly config: ConnectionManagerConfig,
    readonly req: DownstreamRequest,
    readonly res: DownstreamResponse,
    downstream: DownstreamInfo,
  ) {
    this.downstream = downstream;
    this.requestHeaders = buildRequestHeaders(req, downstream);
    this.filters = config.filterFactories.map((f) => f.createFilter(config.filterContext));
    for (const f of this.filters) {
      f.setDecoderFilterCallbacks?.(this);
      f.setEncoderFilterCallbacks?.(this);
    }
    res.once('close', () => {
      if (!this.complete) {
        this.streamInfo.setFlag(1 << 14); // DC: downstream went away first
        for (const cb of this.resetCallbacks) cb();
      }
      this.destroy();
    });
    res.once('finish', () => {
      this.complete = true;
    });
  }

  get routeTable(): RouteTable {
    return this.config.routeTable;
  }

  get requestBody(): Readable {
    return this.req as Readable;
  }

  formatContext(responseHeaders?: Headers): FormatContext {
    return {
      info: this.streamInfo,
      requestHeaders: this.requestHeaders,
      responseHeaders,
      protocol: this.downstream.protocol,
      remoteAddress: this.downstream.remoteAddress,
      remotePort: this.downstream.remotePort,
      directRemoteAddress: this.downstream.directRemoteAddress,
      directRemotePort: this.downstream.directRemotePort,
      localAddress: this.downstream.localAddress,
      localPort: this.downstream.localPort,
    };
  }

  route(): { vhost: VirtualHost; route: Route } | undefined {
    if (this.cachedRoute === null) {
      const h = this.requestHeaders;
      const fullPath = (h[':path'] as string | undefined) ?? '/';
      const q = fullPath.search(/[?#]/);
      let path = q < 0 ? fullPath : fullPath.slice(0, q);
      let query = '';
      if (q >= 0 && fullPath[q] === '?') {
        const hash = fullPath.indexOf('#', q);
        query = fullPath.slice(q + 1, hash < 0 ? undefined : hash);
      }
      if (path === '') path = '/';
      this.cachedRoute = this.config.routeTable.route((h[':authority'] as string | undefined) ?? '', {
        path,
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

  start(): void {
    this.continueDecoding();
  }

  continueDecoding(): void {
    const endStream = false;
    while (this.decodeIndex < this.filters.length) {
      const f = this.filters[this.decodeIndex++]!;
      if (!f.decodeHeaders) continue;
      if (f.decodeHeaders(this.requestHeaders, endStream) === FilterHeadersStatus.StopIteration) return;
      if (this.headersSent || this.res.writableEnded) return;
    }
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
    this.writeHeaders(p.status, p.headers, p.endStream, p.body);
  }

  private writeHeaders(status: number, headers: Headers, endStream: boolean, body?: Buffer): void {
    if (this.headersSent || this.res.writableEnded) return;
    this.headersSent = true;
    this.streamInfo.responseCode = status;
    const cfg = this.config;
    this.routeMutations('response', headers);
    if (cfg.serverHeaderTransformation === 'OVERWRITE') headers.server = cfg.serverName;
    else if (cfg.serverHeaderTransformation === 'APPEND_IF_ABSENT' && headers.server === undefined)
      headers.server = cfg.serverName;
    const res = this.res as http.ServerResponse;
    if (this.downstream.protocol === 'HTTP/2') {
      for (const k of Object.keys(headers)) if (k.startsWith(':')) delete headers[k];
    }
    res.writeHead(status, headers as http.OutgoingHttpHeaders);
    if (body) res.end(body);
    else if (endStream) res.end();
  }

  /** Applies response_headers_to_add/remove at route, virtual host and route-config level (in that order). */
  private routeMutations(which: 'response', headers: Headers): void {
    const r = this.cachedRoute;
    const ctx = this.formatContext(headers);
    if (r) {
      r.route.responseMutations.apply(headers, ctx);
      r.vhost.responseMutations.apply(headers, ctx);
    }
    this.config.routeTable.responseMutations.apply(headers, ctx);
    void which;
  }

  encodeData(chunk: Buffer, endStream: boolean): boolean {
    this.streamInfo.bytesSent += chunk.length;
    const res = this.res as http.ServerResponse;
    if (endStream) {
      res.end(chunk);
      return true;
    }
    return res.write(chunk);
  }

  encodeTrailers(trailers: Headers): void {
    const res = this.res as http.ServerResponse;
    res.addTrailers(trailers as http.OutgoingHttpHeaders);
    res.end();
  }

  onDownstreamDrain(cb: () => void): void {
    this.res.once('drain', cb);
  }

  onDownstreamReset(cb: () => void): void {
    this.resetCallbacks.push(cb);
  }

  resetStream(): void {
    this.complete = true;
    const r = this.res as http2.Http2ServerResponse;
    if (this.downstream.protocol === 'HTTP/2') r.stream.close(2 /* INTERNAL_ERROR */);
    else (this.res as http.ServerResponse).socket?.destroy();
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

  private destroy(): void {
    for (const f of this.filters) f.onDestroy?.();
  }
}

function buildRequestHeaders(req: DownstreamRequest, d: DownstreamInfo): Headers {
  const h: Headers = {};
  const src = req.headers as Record<string, string | string[] | undefined>;
  if (d.protocol === 'HTTP/2') {
    for (const k in src) h[k] = src[k];
  } else {
    h[':method'] = req.method ?? 'GET';
    h[':path'] = req.url ?? '/';
    h[':scheme'] = d.scheme;
    for (const k in src) {
      if (k === 'host') h[':authority'] = src[k];
      else h[k] = src[k];
    }
  }
  return h;
}
