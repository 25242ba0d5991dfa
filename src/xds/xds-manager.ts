// Herald's side of dynamic configuration: the xDS client's updates become
// clusters, endpoints, listeners and route tables of the running server.
//
// Every resource is validated with Herald's strict walker and compiled before
// anything is applied: a bad resource rejects the whole response (NACK with
// the error naming the field), and the last good config stays in force.
// Applying never interrupts traffic: a replaced cluster finishes its requests
// in flight on its old connections, a route table change affects streams that
// start afterwards, a changed listener keeps its socket.
//
// In the main process of several workers, the validated resources are also
// sent to every worker (as canonical JSON), which applies them the same way.
// Loaded only when the bootstrap has dynamic resources (it brings gRPC).

import { logger } from '../common/logger.js';
import { envoyProtos } from '../config/envoy-protos.js';
import { ConfigErrors } from '../config/errors.js';
import { walkMessage } from '../config/proto-json.js';
import type { ConfigSourceConfig } from '../router/rds.js';
import type { Server } from '../server/server.js';
import type { ClusterConfig } from '../upstream/cluster-config.js';
import { applyResources, type Compiled, compileResource, type XdsResource } from './apply.js';
import { XdsClient, type XdsUpdate } from './client/xds-client.js';
import { FileSource } from './file-source.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE } from './type-urls.js';

const log = logger('config');

const TYPE_NAMES: Record<string, string> = {
  [LISTENER_TYPE]: 'envoy.config.listener.v3.Listener',
  [CLUSTER_TYPE]: 'envoy.config.cluster.v3.Cluster',
  [ROUTE_TYPE]: 'envoy.config.route.v3.RouteConfiguration',
  [ENDPOINT_TYPE]: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  [SECRET_TYPE]: 'envoy.extensions.transport_sockets.tls.v3.Secret',
};

export class XdsManager {
  /** The ADS client (ads_config); undefined without one. */
  readonly client: XdsClient | undefined;
  /** Clients of per-type discovery services (api_config_source), by cluster and API type. */
  private readonly apiClients = new Map<string, XdsClient>();
  private started = false;
  private readonly files: FileSource[] = [];
  private readonly edsNames = new Set<string>();
  private readonly rdsNames = new Set<string>();
  private readonly firstUpdate = new Map<string, () => void>();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly server: Server,
    ads: { target: string; apiType: 'GRPC' | 'DELTA_GRPC' } | undefined,
    private readonly dyn: { lds?: ConfigSourceConfig | undefined; cds?: ConfigSourceConfig | undefined },
    /** host:port of a static cluster's first endpoint (an xDS server). */
    private readonly targetOf: (cluster: string) => string,
  ) {
    server.context.stats.onFlush(() => this.mirrorStats());
    if (ads) this.client = this.makeClient(ads.target, ads.apiType, true);
  }

  private makeClient(target: string, apiType: 'GRPC' | 'DELTA_GRPC', ads: boolean): XdsClient {
    const node = this.server.config.node;
    const dyn = this.dyn;
    const client = new XdsClient({
      target,
      node: { id: node.id, cluster: node.cluster, metadata: node.metadata },
      apiType,
      ads,
      onUpdate: (typeUrl, u) => this.onUpdate(typeUrl, u),
      initialFetchTimeoutMs: Math.max(
        dyn.lds?.initialFetchTimeoutMs ?? 15000,
        dyn.cds?.initialFetchTimeoutMs ?? 15000,
      ),
      onInitialFetchTimeout: (typeUrl) => {
        log.warn(`xDS: nothing received for ${typeUrl} within initial_fetch_timeout`);
        this.firstUpdate.get(typeUrl)?.();
      },
    });
    const connected = this.server.context.stats.gauge('control_plane.connected_state');
    client.on('connected', () => connected.set(1));
    client.on('disconnected', () => connected.set(0));
    return client;
  }

  /** Subscribes a type (all of it, or the named resources) where its config source says. */
  private subscribe(src: ConfigSourceConfig, typeUrl: string, names?: string[]): void {
    if (src.kind === 'path') {
      this.addFile(src.path, typeUrl);
      return;
    }
    let client = this.client;
    if (src.kind === 'api') {
      const key = `${src.cluster}|${src.apiType}`;
      client = this.apiClients.get(key);
      if (!client) {
        client = this.makeClient(this.targetOf(src.cluster), src.apiType, false);
        this.apiClients.set(key, client);
        if (this.started) void client.start();
      }
    }
    client?.subscribe(typeUrl, names);
  }

  private allClients(): XdsClient[] {
    return [...(this.client ? [this.client] : []), ...this.apiClients.values()];
  }

  private mirrorStats(): void {
    const stats = this.server.context.stats;
    const prefixes: Record<string, string> = { cds: 'cluster_manager.cds.', lds: 'listener_manager.lds.' };
    for (const [short, prefix] of Object.entries(prefixes)) {
      for (const c of this.allClients()) {
        const s = c.stats[short as 'cds' | 'lds'];
        if (!s?.update_attempt) continue;
        for (const k of [
          'update_attempt',
          'update_rejected',
          'update_failure',
          'init_fetch_timeout',
        ] as const) {
          const ctr = stats.counter(`${prefix}${k}`);
          const v = Number(s[k] ?? 0);
          if (v > ctr.value) ctr.inc(v - ctr.value);
        }
        // Envoy's version gauge is a 64-bit hash of version_info; here its low 53 bits (a JS number).
        stats.gauge(`${prefix}version`).set(Number(BigInt.asUintN(53, s.version)));
      }
    }
  }

  /** A file source (path_config_source) for a type, or for the named RDS/EDS resource. */
  private addFile(file: string, typeUrl: string): void {
    const f = new FileSource(file, typeUrl, (t, u) => this.onUpdate(t, u));
    this.files.push(f);
    f.start();
  }

  /** Subscribes and waits for the first CDS then LDS answers (or their initial fetch timeouts). */
  async start(): Promise<void> {
    const secrets = this.server.context.secrets;
    const sdsNames = new Set<string>();
    const subscribeSds = (name: string, source: ConfigSourceConfig) => {
      if (sdsNames.has(name)) return;
      sdsNames.add(name);
      this.subscribe(source, SECRET_TYPE, [name]);
    };
    secrets.onNewName = subscribeSds;
    for (const [name, source] of secrets.names()) if (source) subscribeSds(name, source);
    const rds = this.server.context.rds;
    rds.onNewName = (name, source) => this.subscribeRds(name, source);
    for (const h of rds.all()) this.subscribeRds(h.name, h.source);
    for (const c of this.server.clusterManager.all()) this.maybeSubscribeEds(c.config);
    const waits: Promise<void>[] = [];
    // Clusters first (a listener's routes name them), as Envoy initializes CDS before LDS.
    for (const [typeUrl, src] of [
      [CLUSTER_TYPE, this.dyn.cds],
      [LISTENER_TYPE, this.dyn.lds],
    ] as const) {
      if (!src) continue;
      if (src.kind === 'path') {
        // The file is read now and its content queued; once the queue has applied it, the type is
        // initialized (a missing or rejected file leaves it empty until one is moved into place).
        this.subscribe(src, typeUrl);
        waits.push(this.queue.then(() => undefined));
      } else {
        waits.push(this.waitFirst(typeUrl));
        this.subscribe(src, typeUrl);
      }
    }
    this.started = true;
    await Promise.all(this.allClients().map((c) => c.start()));
    await Promise.all(waits);
  }

  private waitFirst(typeUrl: string): Promise<void> {
    return new Promise((resolve) => this.firstUpdate.set(typeUrl, resolve));
  }

  private subscribeRds(name: string, source: ConfigSourceConfig): void {
    if (this.rdsNames.has(name)) return;
    this.rdsNames.add(name);
    this.subscribe(source, ROUTE_TYPE, [name]);
  }

  private maybeSubscribeEds(c: ClusterConfig): void {
    const eds = c.eds;
    if (!eds || this.edsNames.has(eds.serviceName)) return;
    this.edsNames.add(eds.serviceName);
    this.subscribe(eds.source, ENDPOINT_TYPE, [eds.serviceName]);
  }

  private onUpdate(typeUrl: string, u: XdsUpdate): string | undefined {
    const typeName = TYPE_NAMES[typeUrl];
    if (!typeName) return `resource type ${typeUrl} is not supported`;
    const resources: XdsResource[] = [];
    for (const [name, ru] of [...u.added, ...u.updated]) {
      const { '@type': _t, ...body } = ru.resource;
      const { value, errors } = walkMessage(
        envoyProtos(),
        typeName,
        body,
        { checkRequired: true },
        `${name}: `,
      );
      if (errors.length || !value) return errors.map((e) => e.message).join('; ') || `${name}: invalid`;
      resources.push({ name, version: ru.version, resource: value });
    }
    let compiled: Compiled[];
    try {
      compiled = resources.map((r) => compileResource(this.server, typeUrl, r));
    } catch (e) {
      if (e instanceof ConfigErrors) return e.errors.map((x) => x.message).join('; ');
      return (e as Error).message;
    }
    const stats = this.server.context.stats;
    const prefix =
      typeUrl === CLUSTER_TYPE
        ? 'cluster_manager.cds.'
        : typeUrl === LISTENER_TYPE
          ? 'listener_manager.lds.'
          : undefined;
    if (typeUrl === ROUTE_TYPE || typeUrl === ENDPOINT_TYPE || typeUrl === SECRET_TYPE) {
      // Routes and endpoints apply at once: a listener or cluster may be waiting for them (warming).
      void applyResources(this.server, typeUrl, resources, u.removed, compiled);
      this.server.workers?.broadcast({ t: 'xds', typeUrl, resources, removed: u.removed });
      return undefined;
    }
    // Listeners and clusters are applied one after another, in the order they arrived, then sent
    // to workers (with the ports new listeners were bound to).
    this.queue = this.queue
      .then(async () => {
        await applyResources(this.server, typeUrl, resources, u.removed, compiled);
        const ports = typeUrl === LISTENER_TYPE ? this.server.listenerPorts() : undefined;
        this.server.workers?.broadcast({
          t: 'xds',
          typeUrl,
          resources,
          removed: u.removed,
          ...(ports ? { ports } : {}),
        });
        if (prefix) stats.counter(`${prefix}update_success`).inc();
        this.firstUpdate.get(typeUrl)?.();
        this.firstUpdate.delete(typeUrl);
      })
      .catch((e) => log.error(`xDS: applying ${typeUrl} failed: ${(e as Error).stack ?? e}`));
    // EDS clusters among the new ones need their endpoints.
    for (const c of compiled) if (c.kind === 'cluster') this.maybeSubscribeEds(c.config);
    log.info(
      `xDS: applied ${resources.length} ${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} resource(s), removed ${u.removed.length} (version ${u.versionInfo})`,
    );
    return undefined;
  }

  close(): void {
    for (const c of this.allClients()) c.close();
    for (const f of this.files) f.close();
  }
}
