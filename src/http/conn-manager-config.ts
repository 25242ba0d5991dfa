// envoy.filters.network.http_connection_manager: config compiled once.

import { type AccessLogger, compileAccessLog } from '../accesslog/access-log.js';
import { compileConfigSource } from '../config/config-source.js';
import type { Reader } from '../config/reader.js';
import { type ExtensionFactory, type FactoryContext, registry } from '../extensions/registry.js';
import type { NetworkFilterFactory } from '../network/filter.js';
import type { RouteConfigHolder } from '../router/rds.js';
import { compileRouteConfiguration, type RouteTable } from '../router/route-config.js';
import type { ServerContext } from '../server/server-context.js';
import { type Http2Options, readHttp2Options } from '../upstream/cluster-config.js';
import { ConnectionManager, type Http2Keepalive, HttpConnectionManagerStats } from './conn-manager.js';
import type { HttpFilterContext, HttpFilterFactory } from './filter.js';
import type { EscapedSlashesAction } from './path-utility.js';

export const HCM_TYPE_URL =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

export type CodecType = 'AUTO' | 'HTTP1' | 'HTTP2';
export type ServerHeaderTransformation = 'OVERWRITE' | 'APPEND_IF_ABSENT' | 'PASS_THROUGH';

export interface ConnectionManagerConfig {
  statPrefix: string;
  codecType: CodecType;
  readonly routeTable: RouteTable;
  /** Set when the route configuration comes by RDS. */
  rds: RouteConfigHolder | undefined;
  filterFactories: HttpFilterFactory[];
  filterContext: HttpFilterContext;
  serverName: string;
  serverHeaderTransformation: ServerHeaderTransformation;
  useRemoteAddress: boolean;
  xffNumTrustedHops: number;
  skipXffAppend: boolean;
  generateRequestId: boolean;
  preserveExternalRequestId: boolean;
  maxRequestHeadersKb: number;
  /** common_http_protocol_options.max_headers_count (Envoy default 100). */
  maxHeadersCount: number;
  /** http2_protocol_options: the HTTP/2 server's SETTINGS. */
  http2: Http2Options | undefined;
  /** http2_protocol_options.allow_connect: accept RFC 8441 extended CONNECT (WebSocket over HTTP/2). */
  http2AllowConnect: boolean;
  /** http2_protocol_options.connection_keepalive: PING the client, close if it does not answer. */
  http2Keepalive: Http2Keepalive | undefined;
  /** http_protocol_options.accept_http_10. */
  acceptHttp10: boolean;
  /** Downstream connection idle timeout (common_http_protocol_options.idle_timeout), ms; Envoy's default 1 h. */
  idleTimeoutMs: number;
  /** stream_idle_timeout (default 5 min; 0 disables), ms. */
  streamIdleTimeoutMs: number;
  /** request_timeout (default off), ms. */
  requestTimeoutMs: number;
  /** request_headers_timeout (default off), ms. */
  requestHeadersTimeoutMs: number;
  /** common_http_protocol_options.max_connection_duration (default off), ms. */
  maxConnectionDurationMs: number;
  /** common_http_protocol_options.max_stream_duration (default off), ms: 408 DT, or a reset. */
  maxStreamDurationMs: number;
  /** drain_timeout: between the HTTP/2 shutdown notice and the final GOAWAY. */
  drainTimeoutMs: number;
  /** common_http_protocol_options.max_requests_per_connection (default unlimited: 0). */
  maxRequestsPerConnection: number;
  /** delayed_close_timeout (default 1 s; 0 disables), ms. */
  delayedCloseTimeoutMs: number;
  path: import('./path-utility.js').PathOptions;
  /** strip_matching_host_port / strip_any_host_port: drop the port from :authority before routing. */
  stripHostPort: 'none' | 'matching' | 'any';
  /** access_log: written when each stream ends. */
  accessLoggers: AccessLogger[];
  /** upgrade_configs: upgrade type (lower case) -> enabled. */
  upgrades: Map<string, boolean>;
  /** Upgrade types with their own filter chain (instead of http_filters). */
  upgradeFilters: Map<string, HttpFilterFactory[]>;
  server: ServerContext;
}

export function compileHttpConnectionManager(r: Reader, ctx: FactoryContext): ConnectionManagerConfig {
  const statPrefix = r.str('stat_prefix', '');
  const codecType = r.enum<string>('codec_type', 'AUTO');
  if (codecType === 'HTTP3') throw r.error('codec_type', 'HTTP/3 is not supported');

  const which = r.oneof('route_config', 'rds', 'scoped_routes');
  let routeTable: RouteTable | undefined;
  let rds: RouteConfigHolder | undefined;
  if (which === 'route_config') {
    routeTable = compileRouteConfiguration(r.msg('route_config')!, {
      knownClusters: ctx.server.knownClusters,
      validateClustersDefault: true,
    });
  } else if (which === 'rds') {
    const rr = r.msg('rds')!;
    const name = rr.str('route_config_name', '');
    rds = ctx.server.rds.holder(name, compileConfigSource(rr.msg('config_source')!));
  } else
    throw r.error(which, which ? `'${which}' is not supported yet` : "'route_config' or 'rds' is required");

  const filters = r.list('http_filters');
  const filterFactories = compileHttpFilters(filters, ctx);
  if (filters.length === 0) throw r.error('http_filters', 'at least the router filter is required');

  // upgrade_configs at the HCM may carry their own filter chain (Envoy's UpgradeConfig.filters).
  const upgrades = new Map<string, boolean>();
  const upgradeFilters = new Map<string, HttpFilterFactory[]>();
  for (const u of r.list('upgrade_configs')) {
    const { type, enabled } = compileUpgradeConfig(u);
    upgrades.set(type, enabled);
    const list = u.list('filters');
    if (list.length) upgradeFilters.set(type, compileHttpFilters(list, ctx));
  }

  const cho = r.msg('common_http_protocol_options');
  const idleTimeoutMs = cho ? cho.durationMs('idle_timeout', 3600_000) : 3600_000;
  const maxHeadersCount = cho ? cho.num('max_headers_count', 100) : 100;
  const maxConnectionDurationMs = cho ? cho.durationMs('max_connection_duration', 0) : 0;
  const maxStreamDurationMs = cho ? cho.durationMs('max_stream_duration', 0) : 0;
  // HTTP/2 draining: a first GOAWAY announces it, the final one follows after this long (Envoy: 5 s).
  const drainTimeoutMs = r.durationMs('drain_timeout', 5000);
  const maxRequestsPerConnection = cho ? cho.num('max_requests_per_connection', 0) : 0;
  const h2o = r.msg('http2_protocol_options');
  const http2 = h2o ? readHttp2Options(h2o) : undefined;
  const http2AllowConnect = h2o ? h2o.bool('allow_connect') : false;
  const http2Keepalive = h2o ? readKeepalive(h2o.msg('connection_keepalive')) : undefined;
  const hpo = r.msg('http_protocol_options');
  const acceptHttp10 = hpo ? hpo.bool('accept_http_10') : false;

  const server = ctx.server;
  const fixed = routeTable;
  const holder = rds;
  return {
    statPrefix,
    codecType: codecType as CodecType,
    // An RDS table is read when a stream starts; a stream keeps the one it started with.
    get routeTable() {
      return fixed ?? holder!.table;
    },
    rds,
    filterFactories,
    filterContext: {
      get clusterManager() {
        return server.clusterManager;
      },
    },
    serverName: r.str('server_name', 'envoy'),
    serverHeaderTransformation: r.enum<ServerHeaderTransformation>(
      'server_header_transformation',
      'OVERWRITE',
    ),
    useRemoteAddress: r.bool('use_remote_address'),
    xffNumTrustedHops: r.num('xff_num_trusted_hops', 0),
    skipXffAppend: r.bool('skip_xff_append'),
    generateRequestId: r.has('generate_request_id') ? r.bool('generate_request_id') : true,
    preserveExternalRequestId: r.bool('preserve_external_request_id'),
    maxRequestHeadersKb: r.num('max_request_headers_kb', 60),
    maxHeadersCount,
    acceptHttp10,
    http2,
    http2AllowConnect,
    http2Keepalive,
    idleTimeoutMs,
    streamIdleTimeoutMs: r.durationMs('stream_idle_timeout', 300_000),
    requestTimeoutMs: r.durationMs('request_timeout', 0),
    requestHeadersTimeoutMs: r.durationMs('request_headers_timeout', 0),
    maxConnectionDurationMs,
    maxStreamDurationMs,
    drainTimeoutMs,
    maxRequestsPerConnection,
    delayedCloseTimeoutMs: r.durationMs('delayed_close_timeout', 1000),
    upgrades,
    upgradeFilters,
    accessLoggers: r
      .list('access_log')
      .map((a) => compileAccessLog(a, (x) => ctx.compileExtension<AccessLogger>('access_logger', x))),
    stripHostPort: r.bool('strip_any_host_port')
      ? 'any'
      : r.bool('strip_matching_host_port')
        ? 'matching'
        : 'none',
    path: {
      normalize: r.bool('normalize_path'),
      mergeSlashes: r.bool('merge_slashes'),
      escapedSlashes: r.enum<EscapedSlashesAction>(
        'path_with_escaped_slashes_action',
        'IMPLEMENTATION_SPECIFIC_DEFAULT',
      ),
    },
    server,
  };
}

export const httpConnectionManagerFactory: ExtensionFactory<NetworkFilterFactory> = {
  name: 'envoy.filters.network.http_connection_manager',
  typeUrls: [HCM_TYPE_URL],
  category: 'network_filter',
  create(r, ctx) {
    const cfg = compileHttpConnectionManager(r, ctx);
    // One connection manager (and its HTTP/1 and HTTP/2 codecs) serves every connection of this filter chain.
    let cm: ConnectionManager | undefined;
    return {
      name: 'envoy.filters.network.http_connection_manager',
      terminal: true,
      ...(cfg.rds ? { routeConfigs: [cfg.rds] } : {}),
      createFilter() {
        cm ??= new ConnectionManager(
          cfg,
          new HttpConnectionManagerStats(cfg.server.stats.scope(`http.${cfg.statPrefix}.`)),
        );
        return cm;
      },
    };
  },
};

/** upgrade_configs (HCM or route level): upgrade type, lower case -> enabled. */
/** An HCM's http_filters (or an upgrade's own filters): order checked, the router last. */
function compileHttpFilters(filters: Reader[], ctx: FactoryContext): HttpFilterFactory[] {
  const filterFactories: HttpFilterFactory[] = [];
  filters.forEach((f, i) => {
    const disabled = f.bool('disabled');
    if (f.bool('is_optional')) {
      // An optional filter Herald does not know is skipped, as Envoy does.
      const url = (f.value.typed_config as Record<string, unknown> | undefined)?.['@type'];
      if (typeof url !== 'string' || !registry.byTypeUrl('http_filter', url)) {
        f.ignore('typed_config', 'name');
        return;
      }
    }
    const compiled = ctx.compileExtension<HttpFilterFactory>('http_filter', f);
    if (disabled && compiled.terminal) throw f.error('disabled', 'the terminal filter cannot be disabled');
    // Each HCM filter entry gets its own factory object carrying its config name.
    const factory: HttpFilterFactory = {
      ...compiled,
      configName: f.str('name', ''),
      disabledByDefault: disabled,
    };
    if (factory.terminal && i !== filters.length - 1)
      throw f.error('name', `terminal filter '${factory.name}' must be the last HTTP filter`);
    if (!factory.terminal && i === filters.length - 1)
      throw f.error(
        'name',
        `the last HTTP filter must be a terminal filter (e.g. envoy.filters.http.router), not '${factory.name}'`,
      );
    filterFactories.push(factory);
  });
  return filterFactories;
}

/** One UpgradeConfig (HCM or route): its type and whether it is enabled (default true). */
function compileUpgradeConfig(u: Reader): { type: string; enabled: boolean } {
  const type = u.str('upgrade_type', '').toLowerCase();
  if (type === 'connect-udp') throw u.error('upgrade_type', 'CONNECT-UDP is not supported');
  return { type, enabled: u.has('enabled') ? u.bool('enabled') : true };
}

/** RouteAction.UpgradeConfig.ConnectConfig: Herald terminates CONNECT (and POST when allowed). */
export interface ConnectConfig {
  allowPost: boolean;
}

/** A route's upgrade_configs: type -> enabled, and the CONNECT entry's connect_config if any. */
export function compileUpgradeConfigs(r: Reader): {
  upgrades: Map<string, boolean>;
  connectConfig: ConnectConfig | undefined;
} {
  const upgrades = new Map<string, boolean>();
  let connectConfig: ConnectConfig | undefined;
  for (const u of r.list('upgrade_configs')) {
    const { type, enabled } = compileUpgradeConfig(u);
    upgrades.set(type, enabled);
    const cc = u.msg('connect_config');
    if (cc) {
      // As Envoy: only a CONNECT upgrade may be terminated. proxy_protocol_config is left unread,
      // so it is rejected.
      if (type !== 'connect')
        throw u.error('connect_config', `non-CONNECT upgrade type ${type} has ConnectConfig`);
      connectConfig = { allowPost: cc.bool('allow_post') };
    }
  }
  return { upgrades, connectConfig };
}

/** core.v3.KeepaliveSettings (connection_idle_interval is not supported, so left unread). */
function readKeepalive(k: Reader | undefined): Http2Keepalive | undefined {
  if (!k) return undefined;
  const timeoutMs = k.durationMs('timeout');
  if (timeoutMs === undefined) throw k.error('timeout', 'timeout is required');
  const jitter = k.msg('interval_jitter');
  const intervalMs = k.durationMs('interval', 0);
  const jitterPercent = jitter ? jitter.num('value', 0) : 15;
  // A zero interval sends no interval PINGs (Envoy's meaning).
  if (intervalMs === 0) return undefined;
  return {
    intervalMs,
    timeoutMs,
    jitterPercent,
  };
}
