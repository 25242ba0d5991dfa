// config.bootstrap.v3.Bootstrap (canonical JSON) -> BootstrapConfig: every
// listener, cluster and filter compiled, every field accounted for.
import { compileConfigSource, compileGrpcApi } from '../config/config-source.js';
import { ConfigError, ConfigErrors } from '../config/errors.js';
import type { JsonObject } from '../config/proto-json.js';
import { ReadContext, type Reader } from '../config/reader.js';
import { makeFactoryContext } from '../extensions/compile.js';
import { compileListener, type ListenerConfig } from '../listener/listener-config.js';
import { compileAddress, type SocketAddress } from '../network/address.js';
import type { ConfigSourceConfig } from '../router/rds.js';
import { compileStatsOptions } from '../stats/stats-config.js';
import type { StatsOptions } from '../stats/store.js';
import { compileSecret } from '../tls/secrets.js';
import { type ClusterConfig, compileCluster } from '../upstream/cluster-config.js';
import type { ServerContext } from './server-context.js';

export interface NodeInfo {
  id: string;
  cluster: string;
  metadata: JsonObject;
}

export interface AdminConfig {
  address: SocketAddress;
}

/** Envoy's watchdog for worker event loops (config.bootstrap.v3.Watchdog). */
export interface WatchdogConfig {
  missMs: number;
  megamissMs: number;
  /** 0 = never kill. */
  killMs: number;
  multikillMs: number;
}

/** dynamic_resources: where listeners and clusters come from, and the ADS server. */
export interface DynamicResourcesConfig {
  ads: { apiType: 'GRPC' | 'DELTA_GRPC'; cluster: string } | undefined;
  lds: ConfigSourceConfig | undefined;
  cds: ConfigSourceConfig | undefined;
}

export interface BootstrapConfig {
  node: NodeInfo;
  dynamic: DynamicResourcesConfig | undefined;
  watchdog: WatchdogConfig;
  listeners: ListenerConfig[];
  clusters: ClusterConfig[];
  admin: AdminConfig | undefined;
  /** stats_config and the flush settings. */
  stats: StatsOptions;
  /** Flattened static runtime layers (key -> value), for /runtime. */
  runtime: Record<string, unknown>;
  /** The validated bootstrap, as /config_dump shows it. */
  canonical: JsonObject;
}

export interface CompileOptions {
  serviceCluster?: string | undefined;
  serviceNode?: string | undefined;
}

/** Compiles a validated bootstrap; a problem is thrown as ConfigErrors naming its path. */
export function compileBootstrap(
  canonical: JsonObject,
  server: ServerContext,
  opts: CompileOptions = {},
): BootstrapConfig {
  try {
    return compile(canonical, server, opts);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigErrors([e]);
    throw e;
  }
}

function compile(canonical: JsonObject, server: ServerContext, opts: CompileOptions): BootstrapConfig {
  const rc = new ReadContext();
  const r = rc.root(canonical);

  const node = compileNode(r.msg('node'), opts);
  server.localClusterName = node.cluster;
  // Before anything makes a stat: tags and the matcher apply when a stat is created.
  const stats = compileStatsOptions(r);
  server.stats.configure(stats);
  const sr = r.msg('static_resources');
  const clusterReaders = sr?.list('clusters') ?? [];
  // Cluster names first: routes and tcp_proxy refer to them.
  const names = new Set<string>();
  for (const c of clusterReaders) {
    const name = c.value.name as string;
    if (names.has(name)) throw c.error('name', `cluster '${name}' is defined twice`);
    names.add(name);
  }
  // With CDS, clusters named by routes may arrive later: nothing to validate against yet.
  const dr = canonical.dynamic_resources as JsonObject | undefined;
  server.knownClusters = dr?.cds_config !== undefined ? undefined : names;
  // Static secrets first: TLS contexts that name them find them.
  for (const sec of sr?.list('secrets') ?? []) {
    const name = sec.str('name', '');
    if (!name) throw sec.error('name', 'a secret needs a name');
    server.secrets.update(name, compileSecret(sec));
  }
  const clusters = clusterReaders.map((c) => compileCluster(c, server.secrets));
  const listeners = (sr?.list('listeners') ?? []).map((l, i) =>
    compileListener(l, makeFactoryContext(server, l.path), i),
  );
  const lnames = new Set<string>();
  listeners.forEach((l, i) => {
    if (lnames.has(l.name)) throw sr!.error(`listeners[${i}].name`, `listener '${l.name}' is defined twice`);
    lnames.add(l.name);
  });

  let admin: AdminConfig | undefined;
  const a = r.msg('admin');
  if (a) {
    const addr = a.msg('address');
    // Envoy without an admin address runs no admin server.
    if (addr) admin = { address: compileAddress(addr) };
  }
  const runtime = compileRuntime(r.msg('layered_runtime'));
  const watchdog = compileWatchdogs(r);
  const dynamic = compileDynamicResources(r.msg('dynamic_resources'), names);
  rc.assertAllRead();
  return { node, watchdog, dynamic, listeners, clusters, admin, stats, runtime, canonical };
}

function compileNode(r: Reader | undefined, opts: CompileOptions): NodeInfo {
  const node: NodeInfo = {
    id: r?.str('id', '') ?? '',
    cluster: r?.str('cluster', '') ?? '',
    metadata: (r?.raw('metadata') as JsonObject | undefined) ?? {},
  };
  // Identity only: sent to control planes, shown by /server_info.
  r?.ignore(
    'locality',
    'user_agent_name',
    'user_agent_version',
    'user_agent_build_version',
    'extensions',
    'client_features',
  );
  if (!node.cluster && opts.serviceCluster) node.cluster = opts.serviceCluster;
  if (!node.id && opts.serviceNode) node.id = opts.serviceNode;
  return node;
}

function compileDynamicResources(
  r: Reader | undefined,
  staticClusters: ReadonlySet<string>,
): DynamicResourcesConfig | undefined {
  if (!r) return undefined;
  let ads: DynamicResourcesConfig['ads'];
  const a = r.msg('ads_config');
  if (a) {
    const { apiType, cluster } = compileGrpcApi(a);
    if (!staticClusters.has(cluster))
      throw a.error('grpc_services', `ADS cluster '${cluster}' must be a static cluster`);
    ads = { apiType, cluster };
  }
  const lds = r.has('lds_config') ? compileConfigSource(r.msg('lds_config')!) : undefined;
  const cds = r.has('cds_config') ? compileConfigSource(r.msg('cds_config')!) : undefined;
  for (const [key, src] of [
    ['lds_config', lds],
    ['cds_config', cds],
  ] as const)
    if (src?.kind === 'ads' && !ads) throw r.error(key, 'ads is used but there is no ads_config');
    else if (src?.kind === 'api' && !staticClusters.has(src.cluster))
      throw r.error(key, `the xDS cluster '${src.cluster}' must be a static cluster`);
  return { ads, lds, cds };
}

/** `watchdogs.worker_watchdog` (or the deprecated `watchdog`); the main process has no loop worth watching. */
function compileWatchdogs(r: Reader): WatchdogConfig {
  const out: WatchdogConfig = { missMs: 200, megamissMs: 1000, killMs: 0, multikillMs: 0 };
  const ws = r.msg('watchdogs');
  if (ws) {
    const main = ws.msg('main_thread_watchdog');
    if (main) readWatchdog(main, { ...out });
  }
  const w = ws?.msg('worker_watchdog') ?? r.msg('watchdog');
  if (w) readWatchdog(w, out);
  return out;
}

function readWatchdog(r: Reader, out: WatchdogConfig): void {
  if (r.list('actions').length) throw r.error('actions', 'watchdog actions are not supported');
  out.missMs = r.durationMs('miss_timeout', 200);
  out.megamissMs = r.durationMs('megamiss_timeout', 1000);
  out.killMs = r.durationMs('kill_timeout', 0);
  out.multikillMs = r.durationMs('multikill_timeout', 0);
  // Jitter and the multikill threshold only shape when Envoy aborts the whole process.
  r.ignore('max_kill_timeout_jitter', 'multikill_threshold');
}

function compileRuntime(r: Reader | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!r) return out;
  for (const layer of r.list('layers')) {
    layer.str('name');
    const kind = layer.oneof('static_layer', 'disk_layer', 'admin_layer', 'rtds_layer');
    if (kind === 'static_layer') flatten(layer.raw('static_layer'), '', out);
    else if (kind === 'admin_layer') layer.raw('admin_layer');
    else if (kind) throw layer.error(kind, `runtime layer '${kind}' is not supported yet`);
  }
  return out;
}

function flatten(v: unknown, prefix: string, out: Record<string, unknown>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = v;
  }
}
