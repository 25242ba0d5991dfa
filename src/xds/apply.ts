// Applying validated xDS resources to a running Herald: clusters, endpoints,
// listeners and route tables. Used by the main process (after its xDS client
// validated an update) and by workers (for what the main process sends them).
// Nothing here loads protobuf or gRPC code.

import { hashingReady, initHashing } from '../common/xxhash.js';
import { ConfigError, ConfigErrors } from '../config/errors.js';
import type { JsonObject } from '../config/proto-json.js';
import { ReadContext } from '../config/reader.js';
import { makeFactoryContext } from '../extensions/compile.js';
import { compileListener, type ListenerConfig } from '../listener/listener-config.js';
import { hashPolicyCompiled } from '../router/hash-policy.js';
import { compileRouteConfiguration, type RouteTable } from '../router/route-config.js';
import type { Server } from '../server/server.js';
import { compileSecret, type TlsSecret } from '../tls/secrets.js';
import { type ClusterConfig, compileCluster, compileLoadAssignment } from '../upstream/cluster-config.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE } from './type-urls.js';

/** One resource as workers receive it. */
export interface XdsResource {
  name: string;
  version: string;
  resource: JsonObject;
}

export type Compiled =
  | { kind: 'cluster'; name: string; config: ClusterConfig }
  | { kind: 'listener'; name: string; config: ListenerConfig }
  | { kind: 'route'; name: string; table: RouteTable }
  | { kind: 'endpoints'; name: string; assignment: ReturnType<typeof compileLoadAssignment> }
  | { kind: 'secret'; name: string; secret: TlsSecret };

/** Compiles one canonical resource; throws ConfigErrors naming the field. */
export function compileResource(server: Server, typeUrl: string, r: XdsResource): Compiled {
  const { '@type': _t, ...body } = r.resource;
  const path = `${typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} '${r.name}'`;
  const rc = new ReadContext();
  const reader = rc.root(body as JsonObject, path);
  let out: Compiled;
  try {
    if (typeUrl === CLUSTER_TYPE)
      out = { kind: 'cluster', name: r.name, config: compileCluster(reader, server.context.secrets) };
    else if (typeUrl === LISTENER_TYPE)
      out = {
        kind: 'listener',
        name: r.name,
        config: compileListener(reader, makeFactoryContext(server.context, path), 0),
      };
    else if (typeUrl === ROUTE_TYPE)
      out = {
        kind: 'route',
        name: r.name,
        // RDS tables are not validated against clusters (Envoy's default for RDS).
        table: compileRouteConfiguration(reader, { validateClustersDefault: false }),
      };
    else if (typeUrl === ENDPOINT_TYPE)
      out = { kind: 'endpoints', name: r.name, assignment: compileLoadAssignment(reader) };
    else if (typeUrl === SECRET_TYPE) out = { kind: 'secret', name: r.name, secret: compileSecret(reader) };
    else throw new ConfigError(path, `resource type ${typeUrl} is not supported`);
    rc.assertAllRead();
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigErrors([e]);
    throw e;
  }
  return out;
}

/**
 * Applies compiled resources of one type, and removals. Returns when new clusters are warm
 * (their endpoints arrived) so that a listener update that follows can use them.
 */
export async function applyResources(
  server: Server,
  typeUrl: string,
  resources: XdsResource[],
  removed: string[],
  compiled?: Compiled[],
  ports?: Record<string, number>,
): Promise<void> {
  const items = compiled ?? resources.map((r) => compileResource(server, typeUrl, r));
  // xxHash (WebAssembly) is loaded on first need, as at start-up: a route that hashes or a
  // cluster balancing by hash.
  const hashLb = (c: Compiled) =>
    c.kind === 'cluster' && (c.config.lbPolicy === 'RING_HASH' || c.config.lbPolicy === 'MAGLEV');
  if (!hashingReady() && (hashPolicyCompiled() || items.some(hashLb))) await initHashing();
  let state = server.dynamicState.get(typeUrl);
  if (!state) server.dynamicState.set(typeUrl, (state = new Map()));
  for (const r of resources) state.set(r.name, r);
  for (const name of removed) state.delete(name);
  const cm = server.clusterManager;
  const now = Date.now();
  const warming: Promise<void>[] = [];
  const listeners: Promise<void>[] = [];
  items.forEach((c, i) => {
    const r = resources[i]!;
    if (c.kind === 'cluster') {
      warming.push(cm.addOrUpdate(c.config));
      cm.dynamic.set(c.name, { version: r.version, lastUpdated: now, resource: r.resource });
      // A (re)created EDS cluster starts from the assignment in force: the control plane does not
      // resend an unchanged one, and in a worker it may have arrived before the cluster.
      const eds = c.config.eds;
      const known = eds && server.dynamicState.get(ENDPOINT_TYPE)?.get(eds.serviceName);
      if (known) {
        const a = compileResource(server, ENDPOINT_TYPE, known);
        if (a.kind === 'endpoints')
          cm.get(c.name)?.updateAssignment(a.assignment.localities, a.assignment.overprovisioningFactor);
      }
    } else if (c.kind === 'endpoints') {
      for (const cl of cm.all())
        if (cl.config.eds?.serviceName === c.name)
          cl.updateAssignment(c.assignment.localities, c.assignment.overprovisioningFactor);
      server.edsVersions.set(c.name, { version: r.version, lastUpdated: now, resource: r.resource });
    } else if (c.kind === 'secret') {
      // TLS contexts naming it rebuild at once: new connections present the new certificate.
      server.context.secrets.update(c.name, c.secret, r.resource, r.version);
    } else if (c.kind === 'route') {
      server.context.rds.update(c.name, c.table, r.resource, r.version);
    } else {
      listeners.push(server.applyListener(c.config, r.version, r.resource, ports?.[c.name]));
    }
  });
  // Listeners are bound before the update counts as applied (their port is known then).
  await Promise.all(listeners);
  for (const name of removed) {
    if (typeUrl === CLUSTER_TYPE) cm.remove(name);
    else if (typeUrl === LISTENER_TYPE) await server.removeListener(name);
  }
  // Clusters warm in the background; the update is applied either way.
  void Promise.all(warming);
}
