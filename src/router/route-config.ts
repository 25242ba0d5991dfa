// config.route.v3.RouteConfiguration compiled into a RouteTable: virtual
// hosts found by :authority (exact names in a Map, wildcards by longest
// suffix/prefix, then '*'), routes tried in order with pre-compiled matchers.

import fs from 'node:fs';
import {
  compileRegex,
  compileRegexMatcher,
  compileStringMatcher,
  type StringPredicate,
} from '../common/matchers.js';
import type { Headers } from '../common/substitution-formatter.js';
import type { Reader } from '../config/reader.js';
import { registry } from '../extensions/registry.js';
import { type ConnectConfig, compileUpgradeConfigs } from '../http/conn-manager-config.js';
import { compileHeaderMutations, type HeaderMutations } from '../http/header-mutation.js';
import { isGrpcContentType } from '../http/local-reply.js';
import type { ResourcePriority } from '../upstream/resource-manager.js';
import { compileHashPolicy, type HashPolicy } from './hash-policy.js';
import { compileRetryPolicy, type RetryPolicy } from './retry-policy.js';

export interface RouteRequest {
  /** :path without query string or fragment. */
  path: string;
  /** Query string without '?', or ''. */
  query: string;
  headers: Headers;
}

type RouteMatcher = (r: RouteRequest) => boolean;

export interface WeightedClusterEntry {
  name: string;
  weight: number;
  requestMutations: HeaderMutations;
  responseMutations: HeaderMutations;
}

export interface ClusterRouteAction {
  kind: 'route';
  cluster?: string;
  clusterHeader?: string;
  weighted?: { clusters: WeightedClusterEntry[]; total: number };
  /** Replaces the matched prefix (for prefix/path_separated_prefix/path routes). */
  prefixRewrite?: string;
  regexRewrite?: { pattern: RegExp; substitution: string };
  hostRewriteLiteral?: string;
  autoHostRewrite: boolean;
  hostRewriteHeader?: string;
  /** Upstream request timeout in ms; 0 disables. */
  timeoutMs: number;
  idleTimeoutMs?: number;
  hashPolicy?: HashPolicy;
  /** Route-level upgrade_configs (override the HCM's). */
  upgrades?: Map<string, boolean>;
  /** The CONNECT upgrade's connect_config: CONNECT is terminated here and its payload sent as raw TCP. */
  connectConfig?: ConnectConfig;
  mirrors?: MirrorPolicy[];
  /** The route's retry_policy (replaces the virtual host's). */
  retryPolicy?: RetryPolicy;
  /** Routing priority: selects the cluster's circuit breakers and pools. */
  priority: ResourcePriority;
}

/** request_mirror_policies: shadow traffic, sent and forgotten. */
export interface MirrorPolicy {
  cluster?: string;
  clusterHeader?: string;
  /** Whether to mirror this request (runtime_fraction's default); undefined = always. */
  sample?: () => boolean;
  appendShadowSuffix: boolean;
}

export interface RedirectRouteAction {
  kind: 'redirect';
  scheme?: string;
  host?: string;
  port?: number;
  path?: string;
  prefixRewrite?: string;
  regexRewrite?: { pattern: RegExp; substitution: string };
  responseCode: number;
  stripQuery: boolean;
}

export interface DirectResponseRouteAction {
  kind: 'direct_response';
  status: number;
  body?: Buffer;
}

export type RouteAction = ClusterRouteAction | RedirectRouteAction | DirectResponseRouteAction;

/**
 * typed_per_filter_config, keyed by the HTTP filter's config name. `disabled`
 * (from a config.route.v3.FilterConfig) turns the filter off for the route.
 */
export type PerFilterConfigs = ReadonlyMap<string, { config: unknown; disabled: boolean }>;

export interface Route {
  name: string;
  perFilterConfig?: PerFilterConfigs;
  matches: RouteMatcher;
  /** For prefix_rewrite: the length of the matched prefix, or -1 for an exact path / regex. */
  matchedPrefix?: string;
  /** connect_matcher: the only kind of route a request without :path (CONNECT) can match. */
  connectMatcher?: boolean;
  action: RouteAction;
  requestMutations: HeaderMutations;
  responseMutations: HeaderMutations;
}

export interface VirtualHost {
  name: string;
  retryPolicy?: RetryPolicy;
  includeRequestAttemptCount: boolean;
  includeAttemptCountInResponse: boolean;
  /** per_request_buffer_limit_bytes: how much request body is kept for retries. */
  perRequestBufferLimitBytes?: number;
  perFilterConfig?: PerFilterConfigs;
  routes: Route[];
  requestMutations: HeaderMutations;
  responseMutations: HeaderMutations;
}

export class RouteTable {
  constructor(
    readonly name: string,
    private readonly exact: Map<string, VirtualHost>,
    /** [suffix without '*', vhost], longest first. */
    private readonly suffixes: Array<[string, VirtualHost]>,
    /** [prefix without '*', vhost], longest first. */
    private readonly prefixes: Array<[string, VirtualHost]>,
    private readonly star: VirtualHost | undefined,
    readonly requestMutations: HeaderMutations,
    readonly responseMutations: HeaderMutations,
    readonly ignorePortInHostMatching: boolean,
    readonly perFilterConfig: PerFilterConfigs | undefined,
  ) {}

  findVirtualHost(authority: string): VirtualHost | undefined {
    let host = authority.toLowerCase();
    if (this.ignorePortInHostMatching) host = stripPort(host);
    const exact = this.exact.get(host);
    if (exact) return exact;
    // Envoy: the wildcard part must match at least one character.
    for (const [sfx, vh] of this.suffixes) if (host.length > sfx.length && host.endsWith(sfx)) return vh;
    for (const [pfx, vh] of this.prefixes) if (host.length > pfx.length && host.startsWith(pfx)) return vh;
    return this.star;
  }

  route(authority: string, req: RouteRequest): { vhost: VirtualHost; route: Route } | undefined {
    const vhost = this.findVirtualHost(authority);
    if (!vhost) return undefined;
    // Path matchers never match a request without :path (Envoy's supportsPathlessHeaders).
    const pathless = req.headers[':path'] === undefined;
    for (const route of vhost.routes)
      if ((!pathless || route.connectMatcher) && route.matches(req)) return { vhost, route };
    return undefined;
  }
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(0, end + 1) : host;
  }
  const colon = host.lastIndexOf(':');
  return colon > 0 && /^\d+$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

export interface RouteCompileOptions {
  /** Clusters known now; validate_clusters checks route targets against them. */
  knownClusters?: ReadonlySet<string>;
  /** Envoy validates clusters by default for inline (static) route configs. */
  validateClustersDefault: boolean;
}

export function compileRouteConfiguration(r: Reader, opts: RouteCompileOptions): RouteTable {
  const name = r.str('name', '');
  const validate = r.has('validate_clusters') ? r.bool('validate_clusters') : opts.validateClustersDefault;
  const known = validate ? opts.knownClusters : undefined;
  const exact = new Map<string, VirtualHost>();
  const suffixes: Array<[string, VirtualHost]> = [];
  const prefixes: Array<[string, VirtualHost]> = [];
  let star: VirtualHost | undefined;
  const seenDomains = new Set<string>();
  const vhostNames = new Set<string>();

  for (const vr of r.list('virtual_hosts')) {
    const vh = compileVirtualHost(vr, known);
    if (vhostNames.has(vh.name)) throw vr.error('name', `duplicate virtual host name '${vh.name}'`);
    vhostNames.add(vh.name);
    for (const raw of vr.strList('domains')) {
      const d = raw.toLowerCase();
      if (seenDomains.has(d))
        throw vr.error('domains', `only unique values for domains are permitted; '${raw}' is duplicated`);
      seenDomains.add(d);
      if (d === '*') star = vh;
      else if (d.startsWith('*')) suffixes.push([d.slice(1), vh]);
      else if (d.endsWith('*')) prefixes.push([d.slice(0, -1), vh]);
      else if (d.includes('*'))
        throw vr.error('domains', `wildcard '*' may only be at the start or end of '${raw}'`);
      else exact.set(d, vh);
    }
  }
  suffixes.sort((a, b) => b[0].length - a[0].length);
  prefixes.sort((a, b) => b[0].length - a[0].length);
  return new RouteTable(
    name,
    exact,
    suffixes,
    prefixes,
    star,
    compileHeaderMutations(r, 'request'),
    compileHeaderMutations(r, 'response'),
    r.bool('ignore_port_in_host_matching'),
    compilePerFilterConfig(r),
  );
}

function compileVirtualHost(r: Reader, known: ReadonlySet<string> | undefined): VirtualHost {
  const name = r.str('name', '');
  const requireTls = r.enum('require_tls', 'NONE');
  if (requireTls !== 'NONE') throw r.error('require_tls', 'require_tls is not supported yet');
  const pfc = compilePerFilterConfig(r);
  const rp = r.msg('retry_policy');
  const limit = r.num('per_request_buffer_limit_bytes');
  return {
    name,
    ...(rp ? { retryPolicy: compileRetryPolicy(rp) } : {}),
    includeRequestAttemptCount: r.bool('include_request_attempt_count'),
    includeAttemptCountInResponse: r.bool('include_attempt_count_in_response'),
    ...(limit !== undefined ? { perRequestBufferLimitBytes: limit } : {}),
    routes: r.list('routes').map((rr) => compileRoute(rr, known)),
    requestMutations: compileHeaderMutations(r, 'request'),
    responseMutations: compileHeaderMutations(r, 'response'),
    ...(pfc ? { perFilterConfig: pfc } : {}),
  };
}

const FILTER_CONFIG_TYPE = 'type.googleapis.com/envoy.config.route.v3.FilterConfig';

/** typed_per_filter_config: each entry compiled by the HTTP filter that owns its type. */
export function compilePerFilterConfig(r: Reader): PerFilterConfigs | undefined {
  const entries = r.map('typed_per_filter_config');
  if (entries.size === 0) return undefined;
  const out = new Map<string, { config: unknown; disabled: boolean }>();
  for (const [name, any] of entries) {
    let cfg: Reader | undefined = any;
    let optional = false;
    let disabled = false;
    if (any.typeUrl === FILTER_CONFIG_TYPE) {
      optional = any.bool('is_optional');
      disabled = any.bool('disabled');
      cfg = any.msg('config');
      if (!cfg) {
        out.set(name, { config: undefined, disabled });
        continue;
      }
    }
    const url = cfg.typeUrl ?? '';
    const factory = registry.byRouteConfigTypeUrl(url);
    if (!factory?.createRouteConfig) {
      if (optional) {
        cfg.ignore(...Object.keys(cfg.value));
        continue;
      }
      throw cfg.error(
        undefined,
        `no HTTP filter in Herald takes per-route config of type ${url} (for '${name}')`,
      );
    }
    out.set(name, { config: factory.createRouteConfig(cfg), disabled });
  }
  return out;
}

function compileRoute(r: Reader, known: ReadonlySet<string> | undefined): Route {
  const name = r.str('name', '');
  const m = r.msg('match')!;
  const { matches, matchedPrefix, connectMatcher } = compileRouteMatch(m);
  let action: RouteAction;
  const kind = r.oneof('route', 'redirect', 'direct_response', 'filter_action', 'non_forwarding_action');
  if (kind === 'route') action = compileRouteAction(r.msg('route')!, known);
  else if (kind === 'redirect') action = compileRedirect(r.msg('redirect')!);
  else if (kind === 'direct_response') action = compileDirectResponse(r.msg('direct_response')!);
  else if (kind) throw r.error(kind, `route action '${kind}' is not supported`);
  else throw r.error(undefined, "one of 'route', 'redirect', 'direct_response' is required");
  const pfc = compilePerFilterConfig(r);
  return {
    name,
    matches,
    ...(matchedPrefix !== undefined ? { matchedPrefix } : {}),
    ...(connectMatcher ? { connectMatcher } : {}),
    ...(pfc ? { perFilterConfig: pfc } : {}),
    action,
    requestMutations: compileHeaderMutations(r, 'request'),
    responseMutations: compileHeaderMutations(r, 'response'),
  };
}

function compileRouteMatch(m: Reader): {
  matches: RouteMatcher;
  matchedPrefix?: string;
  connectMatcher?: boolean;
} {
  const caseSensitive = m.has('case_sensitive') ? m.bool('case_sensitive') : true;
  const kind = m.oneof(
    'prefix',
    'path',
    'safe_regex',
    'path_separated_prefix',
    'connect_matcher',
    'path_match_policy',
  );
  let pathMatch: (p: string) => boolean;
  let matchedPrefix: string | undefined;
  /** connect_matcher: CONNECT requests only, whatever their path (HTTP/1 CONNECT has none). */
  let connect = false;
  switch (kind) {
    case 'prefix': {
      const want = m.str('prefix', '');
      const w = caseSensitive ? want : want.toLowerCase();
      matchedPrefix = want;
      pathMatch = caseSensitive ? (p) => p.startsWith(w) : (p) => p.toLowerCase().startsWith(w);
      break;
    }
    case 'path': {
      const want = m.str('path', '');
      const w = caseSensitive ? want : want.toLowerCase();
      matchedPrefix = want;
      pathMatch = caseSensitive ? (p) => p === w : (p) => p.toLowerCase() === w;
      break;
    }
    case 'path_separated_prefix': {
      const want = m.str('path_separated_prefix', '');
      if (want.includes('?') || want.includes('#')) throw m.error(kind, "must not contain '?' or '#'");
      if (want.endsWith('/') && want !== '/') throw m.error(kind, "must not end with '/'");
      const w = caseSensitive ? want : want.toLowerCase();
      matchedPrefix = want;
      pathMatch = (p) => {
        const q = caseSensitive ? p : p.toLowerCase();
        return q.startsWith(w) && (q.length === w.length || q.charCodeAt(w.length) === 47) /* '/' */;
      };
      break;
    }
    case 'safe_regex': {
      // Envoy: case_sensitive is ignored for safe_regex (the regex says what it means).
      const re = compileRegexMatcher(m.msg('safe_regex')!);
      pathMatch = (p) => re.test(p);
      break;
    }
    case 'connect_matcher': {
      // ConnectMatcher has no fields; reading it marks it used.
      m.msg('connect_matcher');
      connect = true;
      pathMatch = () => true;
      break;
    }
    case undefined:
      throw m.error(
        undefined,
        "one of 'prefix', 'path', 'safe_regex', 'path_separated_prefix', 'connect_matcher' is required",
      );
    default:
      throw m.error(kind, `path matcher '${kind}' is not supported`);
  }

  const headerMatchers = m.list('headers').map(compileHeaderMatcher);
  const queryMatchers = m.list('query_parameters').map(compileQueryMatcher);
  const grpc = m.msg('grpc') !== undefined;
  const fraction = m.msg('runtime_fraction');
  const sample = fraction ? compileFraction(fraction) : undefined;
  if (m.has('dynamic_metadata')) throw m.error('dynamic_metadata', 'not supported');
  if (m.has('filter_state')) throw m.error('filter_state', 'not supported');
  if (m.has('tls_context')) throw m.error('tls_context', 'not supported yet');

  const matches: RouteMatcher = (req) => {
    if (connect && req.headers[':method'] !== 'CONNECT') return false;
    if (!pathMatch(req.path)) return false;
    for (const h of headerMatchers) if (!h(req.headers)) return false;
    if (queryMatchers.length) {
      const params = parseQuery(req.query);
      for (const q of queryMatchers) if (!q(params)) return false;
    }
    if (grpc) {
      const ct = req.headers['content-type'];
      if (!isGrpcContentType(ct)) return false;
    }
    if (sample && !sample()) return false;
    return true;
  };
  if (connect) return { matches, connectMatcher: true };
  return matchedPrefix !== undefined ? { matches, matchedPrefix } : { matches };
}

/** core.v3.RuntimeFractionalPercent, by its default value (Herald's runtime has no overrides yet). */
function compileFraction(fraction: Reader): () => boolean {
  fraction.ignore('runtime_key');
  const dv = fraction.msg('default_value');
  const num = dv?.num('numerator', 0) ?? 0;
  const den = { HUNDRED: 100, TEN_THOUSAND: 10000, MILLION: 1000000 }[
    dv?.enum('denominator', 'HUNDRED') ?? 'HUNDRED'
  ];
  return () => Math.floor(Math.random() * den) < num;
}

function parseQuery(q: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!q) return out;
  for (const part of q.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    if (!out.has(k)) out.set(k, eq < 0 ? '' : part.slice(eq + 1));
  }
  return out;
}

function compileQueryMatcher(r: Reader): (p: Map<string, string>) => boolean {
  const name = r.str('name', '');
  if (r.has('present_match')) {
    const want = r.bool('present_match');
    return (p) => p.has(name) === want;
  }
  const sm = r.msg('string_match');
  if (!sm) return (p) => p.has(name);
  const pred = compileStringMatcher(sm);
  return (p) => {
    const v = p.get(name);
    return v !== undefined && pred(v);
  };
}

/** config.route.v3.HeaderMatcher. Repeated headers are matched joined with ','. */
export function compileHeaderMatcher(r: Reader): (h: Headers) => boolean {
  const rawName = r.str('name', '').toLowerCase();
  const name = rawName === 'host' ? ':authority' : rawName;
  const invert = r.bool('invert_match');
  const missingAsEmpty = r.bool('treat_missing_header_as_empty');
  const kind = r.oneof(
    'exact_match',
    'safe_regex_match',
    'range_match',
    'present_match',
    'prefix_match',
    'suffix_match',
    'contains_match',
    'string_match',
  );
  let pred: (v: string) => boolean;
  switch (kind) {
    case 'exact_match': {
      const w = r.str(kind, '');
      pred = (v) => v === w;
      break;
    }
    case 'prefix_match': {
      const w = r.str(kind, '');
      pred = (v) => v.startsWith(w);
      break;
    }
    case 'suffix_match': {
      const w = r.str(kind, '');
      pred = (v) => v.endsWith(w);
      break;
    }
    case 'contains_match': {
      const w = r.str(kind, '');
      pred = (v) => v.includes(w);
      break;
    }
    case 'safe_regex_match': {
      const re = compileRegexMatcher(r.msg(kind)!);
      pred = (v) => re.test(v);
      break;
    }
    case 'range_match': {
      const rr = r.msg(kind)!;
      const start = rr.num('start', 0);
      const end = rr.num('end', 0);
      pred = (v) => {
        if (!/^-?\d+$/.test(v)) return false;
        const n = Number(v);
        return n >= start && n < end;
      };
      break;
    }
    case 'string_match': {
      const sp: StringPredicate = compileStringMatcher(r.msg(kind)!);
      pred = sp;
      break;
    }
    case 'present_match': {
      const want = r.bool(kind);
      return (h) => ((h[name] !== undefined) === want) !== invert;
    }
    default:
      // No matcher: the header must be present.
      return (h) => (h[name] !== undefined) !== invert;
  }
  return (h) => {
    const raw = h[name];
    if (raw === undefined && !missingAsEmpty) return false; // absent fails even when inverted, as in Envoy
    const v = raw === undefined ? '' : Array.isArray(raw) ? raw.join(',') : raw;
    return pred(v) !== invert;
  };
}

function compileRouteAction(r: Reader, known: ReadonlySet<string> | undefined): ClusterRouteAction {
  const kind = r.oneof(
    'cluster',
    'cluster_header',
    'weighted_clusters',
    'cluster_specifier_plugin',
    'inline_cluster_specifier_plugin',
  );
  const action: ClusterRouteAction = {
    kind: 'route',
    autoHostRewrite: false,
    timeoutMs: r.durationMs('timeout', 15000),
    priority: r.enum<ResourcePriority>('priority', 'DEFAULT'),
  };
  const rp = r.msg('retry_policy');
  if (rp) action.retryPolicy = compileRetryPolicy(rp);
  const checkCluster = (path: Reader, key: string, name: string) => {
    if (known && !known.has(name)) throw path.error(key, `route: unknown cluster '${name}'`);
  };
  switch (kind) {
    case 'cluster':
      action.cluster = r.str('cluster', '');
      checkCluster(r, 'cluster', action.cluster);
      break;
    case 'cluster_header':
      action.clusterHeader = r.str('cluster_header', '').toLowerCase();
      break;
    case 'weighted_clusters': {
      const w = r.msg('weighted_clusters')!;
      if (w.has('runtime_key_prefix')) throw w.error('runtime_key_prefix', 'not supported');
      const clusters = w.list('clusters').map((c): WeightedClusterEntry => {
        if (c.has('cluster_header')) throw c.error('cluster_header', 'not supported');
        const name = c.str('name', '');
        checkCluster(c, 'name', name);
        return {
          name,
          weight: c.num('weight', 0),
          requestMutations: compileHeaderMutations(c, 'request'),
          responseMutations: compileHeaderMutations(c, 'response'),
        };
      });
      const sum = clusters.reduce((a, c) => a + c.weight, 0);
      const total = w.num('total_weight');
      if (total !== undefined && total !== 0 && total !== sum)
        throw w.error(
          'total_weight',
          `sum of weights in weighted_cluster should add up to ${total} (they add up to ${sum})`,
        );
      if (sum === 0) throw w.error('clusters', 'sum of weights must be greater than 0');
      action.weighted = { clusters, total: sum };
      break;
    }
    default:
      throw r.error(
        kind,
        kind
          ? `'${kind}' is not supported`
          : "one of 'cluster', 'cluster_header', 'weighted_clusters' is required",
      );
  }
  if (r.has('prefix_rewrite')) action.prefixRewrite = r.str('prefix_rewrite', '');
  const rr = r.msg('regex_rewrite');
  if (rr) {
    if (action.prefixRewrite !== undefined)
      throw r.error('regex_rewrite', 'cannot be used with prefix_rewrite');
    action.regexRewrite = compileRegexRewrite(rr);
  }
  const hostKind = r.oneof(
    'host_rewrite_literal',
    'auto_host_rewrite',
    'host_rewrite_header',
    'host_rewrite_path_regex',
  );
  if (hostKind === 'host_rewrite_literal') action.hostRewriteLiteral = r.str(hostKind, '');
  else if (hostKind === 'auto_host_rewrite') action.autoHostRewrite = r.bool(hostKind);
  else if (hostKind === 'host_rewrite_header') action.hostRewriteHeader = r.str(hostKind, '').toLowerCase();
  else if (hostKind) throw r.error(hostKind, 'not supported');
  const idle = r.durationMs('idle_timeout');
  if (idle !== undefined) action.idleTimeoutMs = idle;
  const hp = compileHashPolicy(r.list('hash_policy'));
  if (hp) action.hashPolicy = hp;
  const { upgrades, connectConfig } = compileUpgradeConfigs(r);
  if (upgrades.size) action.upgrades = upgrades;
  if (connectConfig) action.connectConfig = connectConfig;
  const mirrors = r.list('request_mirror_policies').map((m): MirrorPolicy => {
    const p: MirrorPolicy = { appendShadowSuffix: !m.bool('disable_shadow_host_suffix_append') };
    const kind = m.oneof('cluster', 'cluster_header');
    if (kind === 'cluster') {
      p.cluster = m.str('cluster', '');
      checkCluster(m, 'cluster', p.cluster);
    } else if (kind === 'cluster_header') p.clusterHeader = m.str('cluster_header', '').toLowerCase();
    else throw m.error(undefined, "one of 'cluster' or 'cluster_header' is required");
    const fr = m.msg('runtime_fraction');
    if (fr) p.sample = compileFraction(fr);
    if (m.has('trace_sampled')) m.raw('trace_sampled'); // tracing is not supported; it only affects spans
    return p;
  });
  if (mirrors.length) action.mirrors = mirrors;
  return action;
}

function compileRegexRewrite(r: Reader): { pattern: RegExp; substitution: string } {
  const p = r.msg('pattern')!;
  const anchored = compileRegexMatcher(p);
  // Envoy substitutes every match (RE2::GlobalReplace); \1 becomes $1.
  const pattern = new RegExp(anchored.source.slice(4, -2), 'gu');
  const substitution = r
    .str('substitution', '')
    .replace(/\$/g, '$$$$')
    .replace(/\\(\d)/g, '$$$1');
  return { pattern, substitution };
}

const REDIRECT_CODES: Record<string, number> = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
};

function compileRedirect(r: Reader): RedirectRouteAction {
  const out: RedirectRouteAction = {
    kind: 'redirect',
    responseCode: REDIRECT_CODES[r.enum('response_code', 'MOVED_PERMANENTLY')] ?? 301,
    stripQuery: r.bool('strip_query'),
  };
  const scheme = r.oneof('https_redirect', 'scheme_redirect');
  if (scheme === 'https_redirect' && r.bool('https_redirect')) out.scheme = 'https';
  else if (scheme === 'scheme_redirect') out.scheme = r.str('scheme_redirect', '').toLowerCase();
  if (r.has('host_redirect')) out.host = r.str('host_redirect', '');
  if (r.has('port_redirect')) out.port = r.num('port_redirect', 0);
  const pathKind = r.oneof('path_redirect', 'prefix_rewrite', 'regex_rewrite');
  if (pathKind === 'path_redirect') out.path = r.str(pathKind, '');
  else if (pathKind === 'prefix_rewrite') out.prefixRewrite = r.str(pathKind, '');
  else if (pathKind === 'regex_rewrite') out.regexRewrite = compileRegexRewrite(r.msg(pathKind)!);
  return out;
}

/** Envoy's default cap on direct_response bodies (max_direct_response_body_size_bytes). */
const MAX_DIRECT_RESPONSE_BODY = 4096;

function compileDirectResponse(r: Reader): DirectResponseRouteAction {
  const out: DirectResponseRouteAction = { kind: 'direct_response', status: r.num('status', 200) };
  const b = r.msg('body');
  if (b) {
    out.body = readDataSource(b);
    if (out.body.length > MAX_DIRECT_RESPONSE_BODY)
      throw r.error(
        'body',
        `response body size is ${out.body.length} bytes; maximum is ${MAX_DIRECT_RESPONSE_BODY}`,
      );
  }
  return out;
}

/** config.core.v3.DataSource. */
export function readDataSource(r: Reader): Buffer {
  const kind = r.oneof('filename', 'inline_bytes', 'inline_string', 'environment_variable');
  if (r.has('watched_directory')) throw r.error('watched_directory', 'not supported');
  switch (kind) {
    case 'filename': {
      const f = r.str('filename', '');
      try {
        return fs.readFileSync(f);
      } catch (e) {
        throw r.error('filename', `cannot read '${f}': ${(e as Error).message}`);
      }
    }
    case 'inline_bytes':
      return Buffer.from(r.str('inline_bytes', ''), 'base64');
    case 'inline_string':
      return Buffer.from(r.str('inline_string', ''), 'utf8');
    case 'environment_variable': {
      const name = r.str('environment_variable', '');
      const v = process.env[name];
      if (v === undefined) throw r.error('environment_variable', `environment variable '${name}' is not set`);
      return Buffer.from(v, 'utf8');
    }
    default:
      return Buffer.alloc(0);
  }
}

export { compileRegex };
