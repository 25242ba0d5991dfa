// config.cluster.v3.Cluster -> ClusterConfig (plain data, safe to hand to workers).
import { compileConfigSource } from '../config/config-source.js';
import type { Reader } from '../config/reader.js';
import type { LbPolicyConfig } from '../extensions/load_balancing_policies/policies.js';
import { registry } from '../extensions/registry.js';
import { compileAddress, type SocketAddress } from '../network/address.js';
import type { ConfigSourceConfig } from '../router/rds.js';
import type { SecretRegistry } from '../tls/secrets.js';
import { compileHealthCheck, type HealthCheckConfig } from './health_checkers/config.js';
import { compileOutlierDetection, type OutlierDetectionConfig } from './outlier-detection.js';
import {
  type CircuitBreakersConfig,
  compileCircuitBreakers,
  defaultCircuitBreakers,
} from './resource-manager.js';
import { compileUpstreamTransport, type UpstreamTlsConfig } from './transport-socket.js';

export type DiscoveryType = 'STATIC' | 'STRICT_DNS' | 'LOGICAL_DNS' | 'EDS';
export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV';
export type DnsLookupFamily = 'AUTO' | 'V4_ONLY' | 'V6_ONLY' | 'V4_PREFERRED' | 'ALL';
export type HealthStatus = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'DRAINING' | 'TIMEOUT' | 'DEGRADED';

export interface EndpointConfig {
  address: SocketAddress;
  weight: number;
  healthStatus: HealthStatus;
  hostname: string;
}

export interface LocalityEndpointsConfig {
  priority: number;
  endpoints: EndpointConfig[];
}

/** 'downstream': the same protocol as the request (use_downstream_protocol_config). */
export type UpstreamProtocol = 'http1' | 'http2' | 'downstream' | 'auto';

export interface ClusterConfig {
  name: string;
  type: DiscoveryType;
  connectTimeoutMs: number;
  lbPolicy: LbPolicy;
  leastRequestChoiceCount: number;
  ringHash: { minimumRingSize: number; maximumRingSize: number };
  maglevTableSize: number;
  localities: LocalityEndpointsConfig[];
  dnsLookupFamily: DnsLookupFamily;
  dnsRefreshRateMs: number;
  /** respect_dns_ttl: the next resolution follows the records' TTL. */
  respectDnsTtl: boolean;
  /** dns_failure_refresh_rate: back-off between these after a failed resolution. */
  dnsFailureRefresh: { baseMs: number; maxMs: number } | undefined;
  protocol: UpstreamProtocol;
  /** Upstream connection idle timeout (common_http_protocol_options.idle_timeout); Envoy's default is 1 h. */
  idleTimeoutMs: number;
  /** common_http_protocol_options.max_requests_per_connection; 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** per_connection_buffer_limit_bytes (default 1 MiB) for upstream connections. */
  bufferLimitBytes: number;
  http2: Http2Options;
  /** UpstreamTlsContext, when the cluster has a TLS transport socket. */
  tls: UpstreamTlsConfig | undefined;
  /** Overprovisioning factor for priority load, in percent (Envoy: 140). */
  overprovisioningFactor: number;
  circuitBreakers: CircuitBreakersConfig;
  /** EDS clusters: the ClusterLoadAssignment name and where it comes from. */
  eds?: { serviceName: string; source: ConfigSourceConfig };
  /** common_lb_config.healthy_panic_threshold in percent (Envoy: 50); 0 disables panic mode. */
  healthyPanicThreshold: number;
  /** common_lb_config.ignore_new_hosts_until_first_hc: new hosts are excluded until checked. */
  ignoreNewHostsUntilFirstHc: boolean;
  /** health_checks (Envoy supports one). */
  healthCheck: HealthCheckConfig | undefined;
  outlierDetection: OutlierDetectionConfig | undefined;
}

const HTTP_PROTOCOL_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export function compileCluster(r: Reader, secrets?: SecretRegistry): ClusterConfig {
  const name = r.str('name', '');
  const type = r.enum<string>('type', 'STATIC');
  if (r.has('cluster_type')) throw r.error('cluster_type', 'custom cluster types are not supported yet');
  if (!['STATIC', 'STRICT_DNS', 'LOGICAL_DNS', 'EDS'].includes(type))
    throw r.error('type', `cluster type ${type} is not supported yet`);
  const lbPolicy = r.enum<string>('lb_policy', 'ROUND_ROBIN');
  if (
    ![
      'ROUND_ROBIN',
      'LEAST_REQUEST',
      'RANDOM',
      'RING_HASH',
      'MAGLEV',
      'LOAD_BALANCING_POLICY_CONFIG',
    ].includes(lbPolicy)
  )
    throw r.error('lb_policy', `lb_policy ${lbPolicy} is not supported yet`);
  let choiceCount = 2;
  const lr = r.msg('least_request_lb_config');
  if (lr) choiceCount = lr.num('choice_count', 2);
  const ring = { minimumRingSize: 1024, maximumRingSize: 8388608 };
  const rh = r.msg('ring_hash_lb_config');
  if (rh) {
    ring.minimumRingSize = rh.num('minimum_ring_size', 1024);
    ring.maximumRingSize = rh.num('maximum_ring_size', 8388608);
    if (rh.enum<string>('hash_function', 'XX_HASH') !== 'XX_HASH')
      throw rh.error('hash_function', 'only XX_HASH is supported');
  }
  let maglevTableSize = 65537;
  const mg = r.msg('maglev_lb_config');
  if (mg) maglevTableSize = mg.num('table_size', 65537);

  const cfg: ClusterConfig = {
    name,
    type: type as DiscoveryType,
    connectTimeoutMs: r.durationMs('connect_timeout', 5000),
    lbPolicy: lbPolicy as LbPolicy,
    leastRequestChoiceCount: choiceCount,
    ringHash: ring,
    maglevTableSize,
    localities: [],
    dnsLookupFamily: r.enum<DnsLookupFamily>('dns_lookup_family', 'AUTO'),
    dnsRefreshRateMs: r.durationMs('dns_refresh_rate', 5000),
    respectDnsTtl: r.bool('respect_dns_ttl'),
    dnsFailureRefresh: readFailureRefresh(r.msg('dns_failure_refresh_rate')),
    protocol: 'http1',
    idleTimeoutMs: 3600_000,
    maxRequestsPerConnection: r.num('max_requests_per_connection', 0),
    overprovisioningFactor: 140,
    healthyPanicThreshold: 50,
    ignoreNewHostsUntilFirstHc: false,
    healthCheck: undefined,
    outlierDetection: undefined,
    tls: undefined,
    http2: {
      maxConcurrentStreams: 2147483647,
      initialStreamWindowSize: undefined,
      initialConnectionWindowSize: undefined,
    },
    bufferLimitBytes: r.num('per_connection_buffer_limit_bytes', 1024 * 1024),
    circuitBreakers: r.has('circuit_breakers')
      ? compileCircuitBreakers(r.msg('circuit_breakers')!)
      : defaultCircuitBreakers(),
  };
  if (type === 'EDS') {
    const e = r.msg('eds_cluster_config');
    if (!e) throw r.error('eds_cluster_config', 'an EDS cluster needs eds_cluster_config');
    cfg.eds = {
      serviceName: e.str('service_name', '') || name,
      source: compileConfigSource(e.msg('eds_config')!),
    };
  } else if (r.has('eds_cluster_config'))
    throw r.error('eds_cluster_config', 'only EDS clusters take eds_cluster_config');
  const ts = r.msg('transport_socket');
  if (ts) cfg.tls = compileUpstreamTransport(ts, secrets);

  const common = r.msg('common_lb_config');
  if (common) {
    const panic = common.msg('healthy_panic_threshold');
    // Envoy rounds the percentage to an integer.
    if (panic) cfg.healthyPanicThreshold = Math.min(100, Math.round(panic.num('value', 0)));
    cfg.ignoreNewHostsUntilFirstHc = common.bool('ignore_new_hosts_until_first_hc');
  }
  const hcs = r.list('health_checks');
  if (hcs.length > 1)
    throw r.error('health_checks', 'only one health check per cluster is supported (as in Envoy)');
  if (hcs[0]) cfg.healthCheck = compileHealthCheck(hcs[0]);
  // Herald drops a host that left discovery at once, health checked or not (what this asks for).
  r.bool('ignore_health_on_host_removal');
  const od = r.msg('outlier_detection');
  if (od) cfg.outlierDetection = compileOutlierDetection(od);

  const lbp = r.msg('load_balancing_policy');
  if (lbp) {
    // The first policy Herald implements wins (Envoy's rule); names are informational.
    let chosen: LbPolicyConfig | undefined;
    const policies = lbp.list('policies');
    for (const p of policies) {
      const tec = p.msg('typed_extension_config')!;
      const cfgR = tec.msg('typed_config');
      tec.str('name');
      if (!chosen && cfgR && registry.byTypeUrl('lb_policy', cfgR.typeUrl ?? '')) {
        chosen = registry
          .byTypeUrl('lb_policy', cfgR.typeUrl ?? '')!
          .create(cfgR, undefined as never) as LbPolicyConfig;
      } else if (cfgR) {
        cfgR.ignore(...Object.keys(cfgR.value)); // a fallback Herald does not use
      }
    }
    if (!chosen)
      throw lbp.error('policies', 'none of the listed load-balancing policies is supported by Herald');
    cfg.lbPolicy = chosen.policy;
    if (chosen.choiceCount !== undefined) cfg.leastRequestChoiceCount = chosen.choiceCount;
    if (chosen.ringHash) cfg.ringHash = chosen.ringHash;
    if (chosen.maglevTableSize !== undefined) cfg.maglevTableSize = chosen.maglevTableSize;
  }

  const la = r.msg('load_assignment');
  if (la) {
    const a = compileLoadAssignment(la);
    cfg.localities = a.localities;
    if (a.overprovisioningFactor !== undefined) cfg.overprovisioningFactor = a.overprovisioningFactor;
  }
  if (cfg.protocol === 'auto' && !cfg.tls) {
    // Envoy's auto_config picks by ALPN, which needs TLS; in plaintext it is HTTP/1.1.
    cfg.protocol = 'http1';
  }
  if (cfg.type === 'LOGICAL_DNS') {
    const n = cfg.localities.reduce((a, l) => a + l.endpoints.length, 0);
    if (n !== 1) throw r.error('load_assignment', 'LOGICAL_DNS clusters must have exactly one endpoint');
  }

  // Upstream protocol: the v3 way (typed_extension_protocol_options) or the deprecated field.
  if (r.has('http2_protocol_options')) {
    cfg.http2 = readHttp2Options(r.msg('http2_protocol_options')!);
    cfg.protocol = 'http2';
  }
  const teo = r.map('typed_extension_protocol_options');
  for (const [key, opts] of teo) {
    const url = opts.typeUrl;
    if (url !== HTTP_PROTOCOL_OPTIONS)
      throw opts.error(undefined, `protocol options ${url} (for '${key}') are not supported`);
    const explicit = opts.msg('explicit_http_config');
    if (explicit) {
      if (explicit.has('http2_protocol_options')) {
        cfg.http2 = readHttp2Options(explicit.msg('http2_protocol_options')!);
        cfg.protocol = 'http2';
      } else if (explicit.has('http_protocol_options')) {
        readHttp1Options(explicit.msg('http_protocol_options')!);
        cfg.protocol = 'http1';
      } else {
        throw explicit.error('http3_protocol_options', 'HTTP/3 upstreams are not supported');
      }
    } else if (opts.has('use_downstream_protocol_config')) {
      const d = opts.msg('use_downstream_protocol_config')!;
      const h2 = d.msg('http2_protocol_options');
      if (h2) cfg.http2 = readHttp2Options(h2);
      const h1 = d.msg('http_protocol_options');
      if (h1) readHttp1Options(h1);
      if (d.has('http3_protocol_options'))
        throw d.error('http3_protocol_options', 'HTTP/3 upstreams are not supported');
      cfg.protocol = 'downstream';
    } else if (opts.has('auto_config')) {
      const a = opts.msg('auto_config')!;
      const h2 = a.msg('http2_protocol_options');
      if (h2) cfg.http2 = readHttp2Options(h2);
      const h1 = a.msg('http_protocol_options');
      if (h1) readHttp1Options(h1);
      if (a.has('http3_protocol_options'))
        throw a.error('http3_protocol_options', 'HTTP/3 upstreams are not supported');
      if (a.has('alternate_protocols_cache_options'))
        throw a.error('alternate_protocols_cache_options', 'alternate protocols caches are not supported');
      cfg.protocol = 'auto';
    } else {
      const which = opts.oneof('auto_config');
      throw opts.error(
        which,
        `'${which ?? 'upstream_protocol_options'}' is not supported yet; use explicit_http_config or use_downstream_protocol_config`,
      );
    }
    const common = opts.msg('common_http_protocol_options');
    if (common) {
      cfg.idleTimeoutMs = common.durationMs('idle_timeout', 3600_000);
      const m = common.num('max_requests_per_connection');
      if (m !== undefined) cfg.maxRequestsPerConnection = m;
    }
  }
  return cfg;
}

export interface Http2Options {
  /** Streams per connection before the pool opens another (Envoy's default: 2^31-1). */
  maxConcurrentStreams: number;
  initialStreamWindowSize: number | undefined;
  initialConnectionWindowSize: number | undefined;
}

/** core.v3.Http2ProtocolOptions: the fields Herald's HTTP/2 pool and server honour. */
export function readHttp2Options(h2: Reader): Http2Options {
  return {
    maxConcurrentStreams: h2.num('max_concurrent_streams', 2147483647),
    initialStreamWindowSize: h2.num('initial_stream_window_size'),
    initialConnectionWindowSize: h2.num('initial_connection_window_size'),
  };
}

function readHttp1Options(h1: Reader): void {
  // Nothing yet: the defaults are Envoy's (HTTP/1.1, no absolute URLs).
  void h1;
}

/** config.endpoint.v3.ClusterLoadAssignment: a cluster's load_assignment, or an EDS resource. */
export function compileLoadAssignment(la: Reader): {
  clusterName: string;
  localities: LocalityEndpointsConfig[];
  overprovisioningFactor: number | undefined;
} {
  // Only meaningful for EDS; Envoy ignores it for static clusters too.
  const clusterName = la.str('cluster_name', '');
  const localities: LocalityEndpointsConfig[] = [];
  for (const lr of la.list('endpoints')) {
    // load_balancing_weight only matters with locality_weighted_lb_config, which Herald rejects.
    lr.ignore('load_balancing_weight');
    if (lr.has('locality')) {
      const loc = lr.msg('locality')!;
      loc.ignore('region', 'zone', 'sub_zone'); // labels only, without locality-aware LB
    }
    const priority = lr.num('priority', 0);
    const endpoints = lr.list('lb_endpoints').map((e): EndpointConfig => {
      const ep = e.msg('endpoint');
      if (!ep) throw e.error('endpoint', 'an endpoint is required (named endpoints are not supported)');
      const addr = compileAddress(ep.msg('address')!);
      return {
        address: addr,
        weight: e.num('load_balancing_weight', 1),
        healthStatus: e.enum<HealthStatus>('health_status', 'UNKNOWN'),
        hostname: ep.str('hostname', ''),
      };
    });
    localities.push({ priority, endpoints });
  }
  let overprovisioningFactor: number | undefined;
  const policy = la.msg('policy');
  if (policy) overprovisioningFactor = policy.num('overprovisioning_factor');
  return { clusterName, localities, overprovisioningFactor };
}

/** Cluster.RefreshRate: base_interval (required), max_interval (default 10 x base). */
function readFailureRefresh(r: Reader | undefined): { baseMs: number; maxMs: number } | undefined {
  if (!r) return undefined;
  const baseMs = r.durationMs('base_interval', 5000);
  const maxMs = r.durationMs('max_interval', baseMs * 10);
  if (maxMs < baseMs)
    throw r.error('max_interval', 'max_interval must be greater than or equal to base_interval');
  return { baseMs, maxMs };
}
