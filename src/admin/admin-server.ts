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
import { BOOTSTRAP_TYPE } from '../config/bootstrap-loader.js';
import { envoyProtos } from '../config/envoy-protos.js';
import { type Json, redactSensitive } from '../config/proto-json.js';
import type { AdminConfig } from '../server/bootstrap-config.js';
import type { Server } from '../server/server.js';

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
    this.add('/stats', 'print server stats', false, (q, res) => this.stats(q, res));
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
      await ep.handler(url.searchParams, res);
      if (ep.mutates) this.server.afterAdminMutation(ep.path);
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

  private clusters(q: URLSearchParams, res: http.ServerResponse): void {
    const clusters = this.server.clusterManager?.all() ?? [];
    if (q.get('format') === 'json') {
      sendJson(res, {
        cluster_statuses: clusters.map((c) => ({
          name: c.name,
          added_via_api: false,
          host_statuses: c.allHosts().map((h) => ({
            address: { socket_address: { address: h.address, port_value: h.port } },
            stats: [{ name: 'rq_active', type: 'GAUGE', value: String(h.activeRequests) }],
            health_status: { eds_health_status: h.healthStatus === 'UNKNOWN' ? 'HEALTHY' : h.healthStatus },
            weight: h.weight,
            hostname: h.hostname,
            priority: h.priority,
          })),
        })),
      });
      return;
    }
    const lines: string[] = [];
    for (const c of clusters) {
      lines.push(`${c.name}::observability_name::${c.name}`);
      for (const [prio, label] of [
        ['DEFAULT', 'default_priority'],
        ['HIGH', 'high_priority'],
      ] as const) {
        const t = c.config.circuitBreakers[prio];
        const r = c.resources[prio];
        lines.push(`${c.name}::${label}::max_connections::${t.maxConnections}`);
        lines.push(`${c.name}::${label}::max_pending_requests::${t.maxPendingRequests}`);
        lines.push(`${c.name}::${label}::max_requests::${t.maxRequests}`);
        lines.push(`${c.name}::${label}::max_retries::${r.retries.max}`);
      }
      lines.push(`${c.name}::added_via_api::false`);
      for (const h of c.allHosts()) {
        const p = `${c.name}::${h.addressString}`;
        lines.push(`${p}::rq_active::${h.activeRequests}`);
        lines.push(`${p}::hostname::${h.hostname}`);
        lines.push(`${p}::health_flags::${h.healthFlagsString()}`);
        lines.push(`${p}::weight::${h.weight}`);
        lines.push(`${p}::priority::${h.priority}`);
      }
    }
    send(res, 200, `${lines.join('\n')}\n`);
  }

  private stats(q: URLSearchParams, res: http.ServerResponse): void {
    const store = this.server.context.stats;
    let filter: RegExp | undefined;
    const f = q.get('filter');
    if (f) {
      try {
        filter = new RegExp(f);
      } catch {
        send(res, 400, `Invalid regex: ${f}\n`);
        return;
      }
    }
    const usedOnly = q.has('usedonly');
    const all: Array<[string, number]> = [];
    for (const c of store.allCounters()) all.push([c.name, c.value]);
    for (const g of store.allGauges()) all.push([g.name, g.value]);
    const rows = all
      .filter(([n, v]) => (!filter || filter.test(n)) && (!usedOnly || v !== 0))
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (q.get('format') === 'json') {
      sendJson(res, { stats: rows.map(([name, value]) => ({ name, value })) });
      return;
    }
    send(res, 200, rows.map(([n, v]) => `${n}: ${v}\n`).join(''));
  }

  private configDump(q: URLSearchParams, res: http.ServerResponse): void {
    const protos = envoyProtos();
    const bootstrapType = protos.lookupType(BOOTSTRAP_TYPE)!;
    const bootstrap = redactSensitive(protos, bootstrapType, this.server.config.canonical) as Record<
      string,
      Json
    >;
    const started = new Date(this.server.startTime).toISOString();
    const sr = (bootstrap.static_resources ?? {}) as Record<string, Json[]>;
    const configs: Record<string, Json>[] = [
      { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap, last_updated: started },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
        static_clusters: (sr.clusters ?? []).map((cluster) => ({ cluster, last_updated: started })),
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
        static_listeners: (sr.listeners ?? []).map((listener) => ({ listener, last_updated: started })),
      },
    ];
    const resource = q.get('resource');
    let out: Json = { configs };
    if (resource) {
      const key = resource;
      const items = configs.flatMap((c) => (Array.isArray(c[key]) ? (c[key] as Json[]) : []));
      out = { configs: items };
    }
    sendJson(res, out);
  }
}

function send(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=UTF-8',
    'cache-control': 'no-cache, max-age=0',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function sendJson(res: http.ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, max-age=0' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}
