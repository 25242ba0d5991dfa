// The HTTP filter contract, in Envoy's words. Decoder filters run in config
// order on the request; encoder filters in reverse order on the response.
// A filter returns Continue to pass the headers on, or StopIteration to hold
// them until it calls `continueDecoding()` / `continueEncoding()` (or sends a
// local reply).
import type { FormatContext, Headers } from '../common/substitution-formatter.js';
import type { Route, RouteTable, VirtualHost } from '../router/route-config.js';
import type { StreamInfo } from './stream-info.js';

export enum FilterHeadersStatus {
  Continue = 0,
  StopIteration = 1,
}

export interface LocalReplyOptions {
  /** %RESPONSE_CODE_DETAILS% value, e.g. `route_not_found`. */
  details: string;
  /** Response flag bits to set. */
  flags?: number;
  /** Extra response headers, e.g. x-envoy-overloaded. */
  headers?: Headers;
  grpcStatus?: number;
}

export interface StreamCallbacks {
  readonly streamInfo: StreamInfo;
  readonly requestHeaders: Headers;
  readonly routeTable: RouteTable;
  /** http.<stat_prefix>.* counters of this connection manager. */
  readonly hcmStats: import('./conn-manager.js').HttpConnectionManagerStats;
  /** The route chosen for this request (computed on first use; cleared by clearRouteCache). */
  route(): { vhost: VirtualHost; route: Route } | undefined;
  clearRouteCache(): void;
  /** The most specific typed_per_filter_config for a filter (route, then virtual host, then route config). */
  perFilterConfig<T>(filterName: string): T | undefined;
  /** Values for command operators (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%, ...). */
  formatContext(responseHeaders?: Headers): FormatContext;
  sendLocalReply(status: number, body: string, opts: LocalReplyOptions): void;
}

export interface DownstreamInfo {
  /** The client: the peer, or with use_remote_address false the address taken from x-forwarded-for. */
  remoteAddress: string;
  remotePort: number;
  /** The peer of the TCP connection. */
  directRemoteAddress: string;
  directRemotePort: number;
  localAddress: string;
  localPort: number;
  /** 'HTTP/1.0', 'HTTP/1.1' or 'HTTP/2'. */
  protocol: string;
  /** 'http' or 'https'. */
  scheme: string;
  /** The listener's per_connection_buffer_limit_bytes (the default retry buffer). */
  bufferLimit: number;
}

export interface DecoderFilterCallbacks extends StreamCallbacks {
  readonly downstream: DownstreamInfo;
  /** The upgrade the request asks for (lower case, e.g. "websocket"), if any. */
  readonly upgradeType: string | undefined;
  /** The HCM's upgrade_configs (type -> enabled). */
  readonly hcmUpgrades: ReadonlyMap<string, boolean>;
  /** The request body (ended at once when the request has none). */
  readonly requestBody: import('./codec.js').BodySource;
  /** A filter that consumed the body hands the rest of the chain a new one (the buffer filter). */
  replaceRequestBody(body: import('./codec.js').BodySource): void;
  continueDecoding(): void;
  /** Sends response headers through the encoder filters to the client. */
  encodeHeaders(status: number, headers: Headers, endStream: boolean): void;
  /** Sends body bytes; returns false when the client is not keeping up (wait for onDownstreamDrain). */
  encodeData(chunk: Buffer, endStream: boolean): boolean;
  encodeTrailers(trailers: Headers): void;
  onDownstreamDrain(cb: () => void): void;
  /** Called when the client goes away before the response is complete. */
  onDownstreamReset(cb: () => void): void;
  /** Aborts the response (client sees a reset / closed connection). */
  resetStream(): void;
  /** Overrides the stream idle timeout (a route's idle_timeout); 0 disables it. */
  setStreamIdleTimeout(ms: number): void;
}

export interface EncoderFilterCallbacks extends StreamCallbacks {
  continueEncoding(): void;
}

export interface StreamDecoderFilter {
  setDecoderFilterCallbacks(cb: DecoderFilterCallbacks): void;
  decodeHeaders(headers: Headers, endStream: boolean): FilterHeadersStatus;
}

export interface StreamEncoderFilter {
  setEncoderFilterCallbacks(cb: EncoderFilterCallbacks): void;
  encodeHeaders(status: number, headers: Headers, endStream: boolean): FilterHeadersStatus;
}

export interface StreamFilterBase {
  onDestroy?(): void;
}

export type HttpFilter = StreamFilterBase & Partial<StreamDecoderFilter> & Partial<StreamEncoderFilter>;

/** What an HTTP filter factory returns: called once per stream to make that stream's filter. */
export interface HttpFilterFactory {
  name: string;
  /** The filter's name in the HCM config: the key of its typed_per_filter_config entries. */
  configName?: string;
  /** HttpFilter.disabled: off unless a route's FilterConfig turns it on. */
  disabledByDefault?: boolean;
  /** True for the router: it ends the chain and proxies the request. */
  terminal: boolean;
  createFilter(ctx: HttpFilterContext): HttpFilter;
}

/** Services a filter may use, fixed for the life of the HCM config. */
export interface HttpFilterContext {
  clusterManager: import('../upstream/cluster-manager.js').ClusterManager;
}
