// The admin API (Envoy's /ready, /server_info, /stats, /clusters, /listeners,
// /config_dump, ...). It listens where admin.address says, normally
// 127.0.0.1. Endpoints that change state accept POST only, as Envoy's do.
import http from 'node:http';
import type net from 'node:net';
import { reopenAccessLogs } from '../accesslog/access-log.js';
import {
  allLoggers,
  applyComponentLevels,
  LEVELS,
  logger,
  parseLevel,
  setAllLevels,
} from '../common/logger.js';
import type { Json } from '../config/proto-json.js';
import type { AdminConfig } from '../server/bootstrap-config.js';
import type { Server } from '../server/server.js';
import { type BucketsMode, histogramsJson, histogramText } from '../stats/render.js';
import type { Cluster } from '../upstream/cluster.js';
import { HealthFlag, type Host } from '../upstream/host.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../xds/type-urls.js';
import { certificatesJson } from './certs.js';
import { joinChunks, jsonChunks, LazyList, type Out, Typed, writeChunks } from './json-stream.js';
import { memoryUsage } from './memory.js';
import { prometheusLines } from './stats-stream.js';

const log = logger('admin');

type Handler = (q: URLSearchParams, res: http.ServerResponse) => void | Promise<void>;

interface Endpoint {
  path: string;
  help: string;
  handler: Handler;
  mutates: boolean;
}

export class AdminServer {
  private readonly http: http.Server;
  private readonly endpoints = new Map<string, Endpoint>();
  boundPort = 0;

  constructor(
    private readonly server: Server,
    private readonly config: AdminConfig,
  ) {
    this.http = http.createServer((req, res) => this.onRequest(req, res));
    this.add('/', 'Admin home page', false, (_q, res) => this.help(res));
    this.add('/help', 'print out list of admin commands', false, (_q, res) => this.help(res));
    this.add('/ready', 'print server state, return 200 if LIVE, otherwise return 503', false, (_q, res) => {
      const state = this.server.state;
      send(res, state === 'LIVE' ? 200 : 503, `${state}\n`);
    });
    this.add('/server_info', 'print server version/status information', false, (_q, res) =>
      this.serverInfo(res),
    );
    this.add('/listeners', 'print listener info', false, (q, res) => this.listeners(q, res));
    this.add('/clusters', 'upstream cluster status', false, (q, res) => this.clusters(q, res));
    this.add('/certs', 'print certs on machine', false, (_q, res) =>
      sendJson(res, certificatesJson(this.server.tlsContexts())),
    );
    this.add('/stats', 'print server stats', false, (q, res) => this.stats(q, res));
    this.add('/stats/prometheus', 'print server stats in prometheus format', false, (q, res) =>
      this.prometheus(q, res),
    );
    this.add('/memory', 'print current allocation/heap usage', false, (_q, res) =>
      // The RSS last read for the server.memory_physical_size gauge, should it not be readable now.
      sendJson(
        res,
        memory(() => this.server.context.stats.gauge('server.memory_physical_size').value),
      ),
    );
    this.add('/reset_counters', 'reset all counters to zero', true, (_q, res) => {
      this.server.context.stats.resetCounters();
      send(res, 200, 'OK\n');
    });
    this.add('/drain_listeners', 'drain listeners', true, (q, res) => {
      this.server.drainListeners({ inboundOnly: q.has('inboundonly'), graceful: q.has('graceful') });
      send(res, 200, 'OK\n');
    });
    this.add('/config_dump', 'dump current Envoy configs', false, (q, res) => this.configDump(q, res));
    this.add('/runtime', 'print runtime values', false, (_q, res) =>
      sendJson(res, {
        entries: Object.fromEntries(
          Object.entries(server.config.runtime).map(([k, v]) => [k, { final_value: String(v) }]),
        ),
      }),
    );
    this.add('/healthcheck/fail', 'cause the server to fail health checks', true, (_q, res) => {
      this.server.setHealthCheckFailed(true);
      send(res, 200, 'OK\n');
    });
    this.add('/healthcheck/ok', 'cause the server to pass health checks', true, (_q, res) => {
      this.server.setHealthCheckFailed(false);
      send(res, 200, 'OK\n');
    });
    this.add('/logging', 'query/change logging levels', true, (q, res) => {
      // Envoy: ?level=<l> sets every logger; ?<logger>=<l> one; ?paths=<logger>:<l>,... several.
      try {
        for (const [k, v] of q) {
          if (k === 'level') {
            const l = parseLevel(v);
            if (l === undefined) throw new Error(`invalid level '${v}'`);
            setAllLevels(l);
          } else if (k === 'paths') applyComponentLevels(v);
          else applyComponentLevels(`${k}:${v}`);
        }
      } catch (e) {
        send(
          res,
          404,
          `${(e as Error).message}\nusage: /logging?<name>=<level> (change single level)\n/logging?level=<level> (change all levels)\n`,
        );
        return;
      }
      const names = allLoggers()
        .map((l) => `  ${l.name}: ${LEVELS[l.level]}`)
        .join('\n');
      send(res, 200, `active loggers:\n${names}\n`);
    });
    this.add('/reopen_logs', 'reopen access logs', true, (_q, res) => {
      reopenAccessLogs();
      send(res, 200, 'OK\n');
    });
    this.add('/quitquitquit', 'exit the server', true, (_q, res) => {
      send(res, 200, 'OK\n');
      res.once('finish', () => this.server.quit());
    });
  }

  private add(path: string, help: string, mutates: boolean, handler: Handler): void {
    this.endpoints.set(path, { path, help, handler, mutates });
  }

  async listen(): Promise<void> {
    const { host, port } = this.config.address;
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen({ host, port }, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (this.http.address() as net.AddressInfo).port;
    log.info(`admin address: ${host}:${this.boundPort}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://admin');
    const ep = this.endpoints.get(url.pathname);
    if (!ep) {
      send(res, 404, `invalid path. admin commands are:\n${this.helpText()}`);
      return;
    }
    if (ep.mutates && req.method !== 'POST') {
      send(res, 405, `Method ${req.method} not allowed, POST required.`);
      return;
    }
    const failed = (e: unknown) => {
      log.error(`admin handler ${ep.path} failed: ${(e as Error).message}`);
      if (!res.headersSent) send(res, 500, `${(e as Error).message}\n`);
    };
    const run = async () => {
      // With workers, stats and host state are theirs: gather them first so a read is fresh.
      const workers = this.server.workers;
      if (workers && (ep.path.startsWith('/stats') || ep.path === '/clusters')) await workers.flushStats();
      if (workers && ep.mutates) {
        // The answer waits until every worker has applied the change too (e.g. new log levels).
        const end = res.end.bind(res) as (...a: unknown[]) => http.ServerResponse;
        res.end = ((...args: unknown[]) => {
          void this.server.afterAdminMutation(ep.path).then(() => end(...args));
          return res;
        }) as typeof res.end;
      }
      await ep.handler(url.searchParams, res);
    };
    run().catch(failed);
  }

  private helpText(): string {
    return [...this.endpoints.values()]
      .filter((e) => e.path !== '/')
      .map((e) => `  ${e.path}: ${e.help}`)
      .join('\n');
  }

  private help(res: http.ServerResponse): void {
    send(res, 200, `admin commands are:\n${this.helpText()}\n`);
  }

  private serverInfo(res: http.ServerResponse): void {
    const s = this.server;
    const up = Math.floor((Date.now() - s.startTime) / 1000);
    sendJson(res, {
      version: `herald/${s.version}`,
      state: s.state,
      hot_restart_version: 'disabled',
      command_line_options: s.options.commandLine ?? {},
      node: { id: s.config.node.id, cluster: s.config.node.cluster, metadata: s.config.node.metadata },
      uptime_current_epoch: `${up}s`,
      uptime_all_epochs: `${up}s`,
    });
  }

  private listeners(q: URLSearchParams, res: http.ServerResponse): void {
    const ls = this.server.listeners;
    if (q.get('format') === 'json') {
      sendJson(res, {
        listener_statuses: ls.map((l) => ({
          name: l.name,
          local_address: { socket_address: { address: l.boundHost, port_value: l.boundPort } },
        })),
      });
      return;
    }
    send(res, 200, ls.map((l) => `${l.name}::${l.boundHost}:${l.boundPort}\n`).join(''));
  }

  private async clusters(q: URLSearchParams, res: http.ServerResponse): Promise<void> {
    const clusters = this.server.clusterManager?.all() ?? [];
    if (q.get('format') === 'json') {
      // envoy.admin.v3.Clusters: ClusterStatus per cluster, HostStatus per host (made as written).
      await streamJson(res, {
        cluster_statuses: clusters.map((c) => {
          const hosts = c.allHosts();
          return {
            name: c.name,
            observability_name: c.name,
            added_via_api: false,
            circuit_breakers: {
              thresholds: circuitBreakerThresholds(c).map((t) => ({
                ...(t.priority === 'HIGH' ? { priority: 'HIGH' } : {}),
                max_connections: t.maxConnections,
                max_pending_requests: t.maxPendingRequests,
                max_requests: t.maxRequests,
                max_retries: t.maxRetries,
              })),
            },
            host_statuses: new LazyList(() => mapIter(hosts, hostStatus)),
          };
        }),
      });
      return;
    }
    res.writeHead(200, TEXT_HEADERS);
    await writeChunks(res, joinChunks(orNewline(clusterLines(clusters))));
  }

  /** `?filter=` as a regex, or a 400 already sent (undefined + false). */
  private statsFilter(q: URLSearchParams, res: http.ServerResponse): RegExp | undefined | false {
    const f = q.get('filter');
    if (!f) return undefined;
    try {
      return new RegExp(f);
    } catch {
      send(res, 400, `Invalid regex: ${f}\n`);
      return false;
    }
  }

  private async stats(q: URLSearchParams, res: http.ServerResponse): Promise<void> {
    const store = this.server.context.stats;
    const filter = this.statsFilter(q, res);
    if (filter === false) return;
    if (q.get('format') === 'prometheus') {
      await this.prometheus(q, res);
      return;
    }
    const type = q.get('type') ?? 'All';
    if (!['All', 'Counters', 'Gauges', 'Histograms', 'TextReadouts'].includes(type)) {
      send(res, 400, `invalid type: ${type}\n`);
      return;
    }
    const hb = q.get('histogram_buckets') ?? 'none';
    if (hb !== 'none' && hb !== 'cumulative' && hb !== 'disjoint') {
      send(res, 400, `usage: /stats?histogram_buckets=(cumulative|disjoint|none)\n`);
      return;
    }
    const mode = hb as BucketsMode;
    if (store.options.flushOnAdmin) store.flush();
    const usedOnly = q.has('usedonly');
    const keep = (name: string, used: boolean) => (!filter || filter.test(name)) && (!usedOnly || used);
    const byName = (a: { name: string }, b: { name: string }) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    const rows: Array<{ name: string; value: number }> = [];
    if (type === 'All' || type === 'Counters')
      for (const c of store.allCounters()) if (keep(c.name, c.used)) rows.push(c);
    if (type === 'All' || type === 'Gauges')
      for (const g of store.allGauges()) if (keep(g.name, g.used)) rows.push(g);
    rows.sort(byName);
    const hists =
      type === 'All' || type === 'Histograms'
        ? store
            .allHistograms()
            .filter((h) => keep(h.name, h.used))
            .sort(byName)
        : [];
    if (q.get('format') === 'json') {
      await streamJson(res, {
        stats: new LazyList(function* () {
          for (const { name, value } of rows) yield { name, value };
          if (hists.length) yield histogramsJson(hists, mode) as Json;
        }),
      });
      return;
    }
    res.writeHead(200, TEXT_HEADERS);
    await writeChunks(
      res,
      joinChunks(
        (function* () {
          for (const r of rows) yield `${r.name}: ${r.value}\n`;
          for (const h of hists) yield histogramText(h, mode);
        })(),
      ),
    );
  }

  private async prometheus(q: URLSearchParams, res: http.ServerResponse): Promise<void> {
    const store = this.server.context.stats;
    const filter = this.statsFilter(q, res);
    if (filter === false) return;
    if (store.options.flushOnAdmin) store.flush();
    res.writeHead(200, {
      'content-type': 'text/plain; version=0.0.4; charset=UTF-8',
      'cache-control': 'no-cache, max-age=0',
      'x-content-type-options': 'nosniff',
    });
    await writeChunks(res, joinChunks(prometheusLines(store, q.has('usedonly'), filter)));
  }

  private async configDump(q: URLSearchParams, res: http.ServerResponse): Promise<void> {
    // Protos are loaded on the first dump only: a serving process does not otherwise need them.
    const { envoyProtos } = await import('../config/envoy-protos.js');
    const protos = envoyProtos();
    // Sensitive fields are redacted as the dump is written (Typed), not in a copy of the config.
    const typed = (typeName: string, v: Json) => new Typed(protos, protos.lookupType(typeName)!, v);
    const canonical = this.server.config.canonical;
    const bootstrap = typed(BOOTSTRAP_TYPE, canonical);
    let nameMatch: RegExp | undefined;
    const nameRegex = q.get('name_regex');
    if (nameRegex) {
      try {
        // Envoy matches the whole name (RE2 FullMatch).
        nameMatch = new RegExp(`^(?:${nameRegex})$`);
      } catch (e) {
        send(res, 400, `Error while parsing name_regex from ${nameRegex}: ${(e as Error).message}`);
        return;
      }
    }
    const named = (n: Json | undefined) => !nameMatch || nameMatch.test(typeof n === 'string' ? n : '');
    const started = new Date(this.server.startTime).toISOString();
    const sr = (canonical.static_resources ?? {}) as Record<string, Array<Record<string, Json>>>;
    const configs: Record<string, Out>[] = [
      { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap, last_updated: started },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
        ...(this.server.xds?.client
          ? { version_info: this.server.xds.client.versionInfo(CLUSTER_TYPE) }
          : {}),
        static_clusters: (sr.clusters ?? [])
          .filter((c) => named(c.name))
          .map((cluster) => ({ cluster: typed(CLUSTER_MESSAGE, cluster), last_updated: started })),
        ...nonEmpty(
          'dynamic_active_clusters',
          [...(this.server.clusterManager?.dynamic ?? new Map())]
            .filter(([name]) => named(name))
            .map(([, d]) => ({
              version_info: d.version,
              cluster: typed('google.protobuf.Any', d.resource as Json),
              last_updated: new Date(d.lastUpdated).toISOString(),
            })),
        ),
      },
    ];
    if (q.has('include_eds')) {
      // Static clusters' endpoints, and the ClusterLoadAssignments EDS delivered.
      const dynamicEds = [...this.server.edsVersions]
        .filter(([name]) => named(name))
        .map(([, d]) => ({
          version_info: d.version,
          endpoint_config: d.resource as Json,
          last_updated: new Date(d.lastUpdated).toISOString(),
        }));
      configs.push({
        '@type': 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump',
        static_endpoint_configs: (this.server.clusterManager?.all() ?? [])
          .filter((c) => named(c.name) && c.config.type !== 'EDS')
          .map((c) => ({ endpoint_config: loadAssignment(c) })),
        ...nonEmpty('dynamic_endpoint_configs', dynamicEds),
      });
    }
    configs.push({
      '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
      ...(this.server.xds?.client ? { version_info: this.server.xds.client.versionInfo(LISTENER_TYPE) } : {}),
      static_listeners: (sr.listeners ?? [])
        .filter((l) => named(l.name))
        .map((listener) => ({ listener: typed(LISTENER_MESSAGE, listener), last_updated: started })),
      ...nonEmpty(
        'dynamic_listeners',
        [...this.server.dynamicListeners]
          .filter(([name]) => named(name))
          .map(([name, d]) => ({
            name,
            active_state: {
              version_info: d.version,
              listener: typed('google.protobuf.Any', d.resource as Json),
              last_updated: new Date(d.lastUpdated).toISOString(),
            },
          })),
      ),
    });
    const rdsTables = this.server.context.rds.all().filter((r) => r.resource && named(r.name));
    if (rdsTables.length)
      configs.push({
        '@type': 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump',
        dynamic_route_configs: rdsTables.map((r) => ({
          version_info: r.version,
          route_config: r.resource as Json,
          last_updated: new Date(r.lastUpdated).toISOString(),
        })),
      });
    const resource = q.get('resource');
    const mask = q.get('mask');
    const paths = mask ? mask.split(',').filter(Boolean) : [];
    if (resource) {
      const items = configs.flatMap((c) => (Array.isArray(c[resource]) ? (c[resource] as Out[]) : []));
      if (!configs.some((c) => c[resource] !== undefined)) {
        send(res, 404, `${resource} not found in config dump`);
        return;
      }
      // With a resource, the mask applies to each element (`cluster.name,last_updated`).
      await streamJson(res, { configs: paths.length ? items.map((i) => maskOut(i, paths)) : items });
      return;
    }
    if (paths.length) {
      // Without one, to each config dump message; those the mask does not fit are left out.
      const masked = configs
        .map((c) => maskOut(c, paths) as Record<string, Out>)
        .filter((c) => Object.keys(c).length > 1);
      if (masked.length === 0) {
        send(res, 400, `FieldMask ${mask} could not be successfully applied to any configs.`);
        return;
      }
      await streamJson(res, { configs: masked });
      return;
    }
    await streamJson(res, { configs });
  }
}

// As in bootstrap-loader.ts, which is not imported here: it brings the YAML parser.
const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';
const CLUSTER_MESSAGE = 'envoy.config.cluster.v3.Cluster';
const LISTENER_MESSAGE = 'envoy.config.listener.v3.Listener';

/** Circuit-breaker thresholds per priority as /clusters shows them. */
interface Thresholds {
  priority: 'DEFAULT' | 'HIGH';
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

/** The cluster's configured thresholds (Envoy's defaults where none are set), both priorities. */
function circuitBreakerThresholds(c: Cluster): Thresholds[] {
  return (['DEFAULT', 'HIGH'] as const).map((priority) => {
    const t = c.config.circuitBreakers[priority];
    return {
      priority,
      maxConnections: t.maxConnections,
      maxPendingRequests: t.maxPendingRequests,
      maxRequests: t.maxRequests,
      maxRetries: c.resources[priority].retries.max,
    };
  });
}

/** A cluster's hosts as a ClusterLoadAssignment (for ?include_eds), one endpoint made at a time. */
function loadAssignment(c: Cluster): Out {
  const hosts = c.allHosts();
  return {
    '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    cluster_name: c.name,
    endpoints: new LazyList(() =>
      mapIter(hosts, (h) => ({
        locality: {},
        lb_endpoints: [
          {
            endpoint: {
              address: { socket_address: { address: h.address, port_value: h.port } },
              hostname: h.hostname,
              health_check_config: {},
            },
            health_status: h.healthStatus,
            load_balancing_weight: h.weight,
          },
        ],
        ...(h.priority ? { priority: h.priority } : {}),
      })),
    ),
    policy: { overprovisioning_factor: c.config.overprovisioningFactor },
  };
}

/** envoy.admin.v3.HostStatus for /clusters?format=json. */
function hostStatus(h: Host): Json {
  const f = h.healthFlags;
  return {
    address: { socket_address: { address: h.address, port_value: h.port } },
    stats: [
      { name: 'cx_active', type: 'GAUGE', value: String(h.activeConnections) },
      { name: 'rq_active', type: 'GAUGE', value: String(h.activeRequests) },
    ],
    health_status: {
      ...(f & HealthFlag.FAILED_ACTIVE_HC ? { failed_active_health_check: true } : {}),
      ...(f & HealthFlag.FAILED_OUTLIER_CHECK ? { failed_outlier_check: true } : {}),
      ...(f & HealthFlag.DEGRADED_ACTIVE_HC ? { failed_active_degraded_check: true } : {}),
      ...(f & HealthFlag.PENDING_DYNAMIC_REMOVAL ? { pending_dynamic_removal: true } : {}),
      ...(f & HealthFlag.PENDING_ACTIVE_HC ? { pending_active_hc: true } : {}),
      ...(f & HealthFlag.EXCLUDED_VIA_IMMEDIATE_HC_FAIL ? { excluded_via_immediate_hc_fail: true } : {}),
      ...(f & HealthFlag.ACTIVE_HC_TIMEOUT ? { active_hc_timeout: true } : {}),
      eds_health_status:
        f & HealthFlag.FAILED_EDS_HEALTH
          ? 'UNHEALTHY'
          : f & HealthFlag.DEGRADED_EDS_HEALTH
            ? 'DEGRADED'
            : 'HEALTHY',
    },
    weight: h.weight,
    hostname: h.hostname,
    priority: h.priority,
    locality: {},
  } as Json;
}

/** /clusters in text: Envoy's `cluster::host::stat::value` lines. */
function* clusterLines(clusters: Cluster[]): Generator<string> {
  for (const c of clusters) {
    yield `${c.name}::observability_name::${c.name}\n`;
    for (const [prio, label] of [
      ['DEFAULT', 'default_priority'],
      ['HIGH', 'high_priority'],
    ] as const) {
      const t = c.config.circuitBreakers[prio];
      const r = c.resources[prio];
      yield `${c.name}::${label}::max_connections::${t.maxConnections}\n`;
      yield `${c.name}::${label}::max_pending_requests::${t.maxPendingRequests}\n`;
      yield `${c.name}::${label}::max_requests::${t.maxRequests}\n`;
      yield `${c.name}::${label}::max_retries::${r.retries.max}\n`;
    }
    yield `${c.name}::added_via_api::false\n`;
    for (const h of c.allHosts()) {
      const p = `${c.name}::${h.addressString}`;
      yield `${p}::cx_active::${h.activeConnections}\n` +
        `${p}::rq_active::${h.activeRequests}\n` +
        `${p}::hostname::${h.hostname}\n` +
        `${p}::health_flags::${h.healthFlagsString()}\n` +
        `${p}::weight::${h.weight}\n` +
        `${p}::region::\n` +
        `${p}::zone::\n` +
        `${p}::sub_zone::\n` +
        `${p}::canary::false\n` +
        `${p}::priority::${h.priority}\n` +
        // No outlier detection: Envoy prints -1.
        `${p}::success_rate::-1\n` +
        `${p}::local_origin_success_rate::-1\n`;
    }
  }
}

/** The pieces, or a lone newline when there are none (a text answer ends with one). */
function* orNewline(pieces: Iterable<string>): Generator<string> {
  let any = false;
  for (const p of pieces) {
    any = true;
    yield p;
  }
  if (!any) yield '\n';
}

function* mapIter<T>(list: readonly T[], f: (x: T) => Out): Generator<Out> {
  for (const x of list) yield f(x);
}

/**
 * A FieldMask applied to a message (protobuf's FieldMaskUtil::TrimMessage): only the listed
 * paths are kept. `@type` stays, since masks address the packed message (Envoy unpacks the Any).
 */
export function applyFieldMask(msg: Json, paths: string[]): Json {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return msg;
  const m = msg as Record<string, Json>;
  const out: Record<string, Json> = {};
  if (m['@type'] !== undefined) out['@type'] = m['@type'];
  for (const [head, rests] of maskHeads(paths)) {
    const v = m[head];
    if (v === undefined) continue;
    if (rests.includes('')) out[head] = v;
    else out[head] = Array.isArray(v) ? v.map((x) => applyFieldMask(x, rests)) : applyFieldMask(v, rests);
  }
  return out;
}

/** applyFieldMask over a dump still holding lazy and typed nodes (masked as they are written). */
function maskOut(msg: Out, paths: string[]): Out {
  if (msg instanceof Typed) return new Typed(msg.protos, msg.type, applyFieldMask(msg.value, paths));
  if (msg instanceof LazyList || msg === null || typeof msg !== 'object' || Array.isArray(msg)) return msg;
  const m = msg as Record<string, Out>;
  const out: Record<string, Out> = {};
  if (m['@type'] !== undefined) out['@type'] = m['@type'];
  for (const [head, rests] of maskHeads(paths)) {
    const v = m[head];
    if (v === undefined) continue;
    if (rests.includes('')) out[head] = v;
    else if (v instanceof LazyList) {
      const items = v.items;
      out[head] = new LazyList(function* () {
        for (const x of items()) yield maskOut(x, rests);
      });
    } else out[head] = Array.isArray(v) ? v.map((x) => maskOut(x, rests)) : maskOut(v, rests);
  }
  return out;
}

/** Mask paths by their first field: `a.b,a.c,d` -> a: [b, c], d: [''] ('' = the whole field). */
function maskHeads(paths: string[]): Map<string, string[]> {
  const byHead = new Map<string, string[]>();
  for (const p of paths) {
    const dot = p.indexOf('.');
    const head = dot < 0 ? p : p.slice(0, dot);
    const rest = byHead.get(head) ?? [];
    if (dot >= 0) rest.push(p.slice(dot + 1));
    else rest.push('');
    byHead.set(head, rest);
  }
  return byHead;
}

/** envoy.admin.v3.Memory from the process's memory usage (uint64 fields are strings in JSON). */
function memory(knownRss: () => number): Record<string, string> {
  const m = memoryUsage(knownRss);
  return {
    allocated: String(m.heapUsed + m.external),
    heap_size: String(m.heapTotal),
    pageheap_unmapped: '0',
    pageheap_free: String(Math.max(0, m.heapTotal - m.heapUsed)),
    total_thread_cache: '0',
    total_physical_bytes: String(m.rss),
  };
}

const TEXT_HEADERS = {
  'content-type': 'text/plain; charset=UTF-8',
  'cache-control': 'no-cache, max-age=0',
  'x-content-type-options': 'nosniff',
};
const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-cache, max-age=0' };

function send(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, TEXT_HEADERS);
  res.end(body);
}

function sendJson(res: http.ServerResponse, body: unknown): void {
  res.writeHead(200, JSON_HEADERS);
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

/** sendJson for answers that can be large: written in pieces (see json-stream.ts). */
async function streamJson(res: http.ServerResponse, body: Out): Promise<void> {
  res.writeHead(200, JSON_HEADERS);
  await writeChunks(
    res,
    (function* () {
      yield* jsonChunks(body);
      yield '\n';
    })(),
  );
}

/** Proto3 JSON leaves out empty repeated fields, as Envoy's admin output does. */
function nonEmpty(key: string, items: Out[]): Record<string, Out> {
  return items.length ? { [key]: items } : {};
}
