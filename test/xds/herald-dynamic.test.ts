// Herald configured by a control plane: ADS (state of the world and delta)
// delivers clusters (EDS), endpoints, listeners and routes; updates reach
// traffic without a restart; a bad resource is NACKed naming its field while
// the last good config keeps serving; removals; the same with two workers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JsonObject } from '../../src/config/proto-json.js';
import { Server } from '../../src/server/server.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { adminGet, request, startUpstream, stat, type Upstream } from '../helpers/harness.js';
import { edsCluster, loadAssignment, rdsListener, xdsClusterYaml } from './helpers.js';

/** Per-type discovery services instead of ADS: every config source names the xDS cluster. */
const API_SOURCE = {
  api_config_source: {
    api_type: 'GRPC',
    transport_api_version: 'V3',
    grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }],
  },
};
function viaApi(r: JsonObject): JsonObject {
  return JSON.parse(JSON.stringify(r).replaceAll('"ads":{}', JSON.stringify(API_SOURCE).slice(1, -1)));
}

function bootstrap(xdsPort: number, apiType: 'GRPC' | 'DELTA_GRPC' | 'API'): string {
  const dyn =
    apiType === 'API'
      ? `  cds_config: { api_config_source: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] } }
  lds_config: { api_config_source: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] } }`
      : `  ads_config:
    api_type: ${apiType}
    transport_api_version: V3
    grpc_services: [{ envoy_grpc: { cluster_name: xds } }]
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }`;
  return `
node: { id: herald-test, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
${dyn}
static_resources:
  clusters:
${xdsClusterYaml(xdsPort)}
`;
}

function routes(name: string, rs: JsonObject[]): JsonObject {
  return { name, virtual_hosts: [{ name: 'all', domains: ['*'], routes: rs }] };
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const [apiType, concurrency] of [
  ['GRPC', 1],
  ['DELTA_GRPC', 1],
  ['GRPC', 2],
  ['API', 1],
] as const) {
  describe(`Herald over ${apiType === 'API' ? 'per-type services' : `ADS (${apiType}`}, ${concurrency === 1 ? 'one process' : 'two workers'})`, () => {
    let a: Upstream;
    let b: Upstream;
    let cache: SnapshotCache;
    let xds: XdsServer;
    let h: Server;
    let version = 0;
    const fix = (rs: JsonObject[] | undefined) => (rs ?? []).map((r) => (apiType === 'API' ? viaApi(r) : r));
    const push = (res: Partial<Record<string, JsonObject[]>>) =>
      cache.setSnapshot('herald-test', {
        version: String(++version),
        resources: {
          [CLUSTER_TYPE]: fix(res[CLUSTER_TYPE]),
          [ENDPOINT_TYPE]: fix(res[ENDPOINT_TYPE]),
          [LISTENER_TYPE]: fix(res[LISTENER_TYPE]),
          [ROUTE_TYPE]: fix(res[ROUTE_TYPE]),
        },
      });
    const base = {
      [CLUSTER_TYPE]: [edsCluster('backend')],
      [LISTENER_TYPE]: [rdsListener('ingress', 'main-routes')],
      [ROUTE_TYPE]: [routes('main-routes', [{ match: { prefix: '/' }, route: { cluster: 'backend' } }])],
    };
    before(async () => {
      a = await startUpstream('a');
      b = await startUpstream('b');
      cache = new SnapshotCache();
      xds = new XdsServer(cache, { controlPlaneId: 'test' });
      const port = await xds.listen('127.0.0.1:0');
      push({ ...base, [ENDPOINT_TYPE]: [loadAssignment('backend', [a.port])] });
      h = await Server.create({ configYaml: bootstrap(port, apiType), concurrency });
      await h.start();
    });
    after(async () => {
      await h.stop();
      await xds.close();
      await a.close();
      await b.close();
    });

    /** The upstream names of two requests made at once (with two workers: one on each). */
    const served = async (path = '/') => {
      const port = h.listenerPort('ingress');
      const rs = await Promise.all([request(port, { path }), request(port, { path })]);
      return rs.map((r) => (r.status === 200 ? String(r.headers['x-upstream']) : `status ${r.status}`));
    };

    it('serves what the control plane sent: LDS listener, RDS routes, CDS cluster, EDS endpoints', async () => {
      assert.deepEqual(await served(), ['a', 'a']);
      const admin = h.admin!.boundPort;
      assert.equal(await stat(admin, 'control_plane.connected_state'), 1);
      assert.ok(((await stat(admin, 'cluster_manager.cds.update_success')) ?? 0) >= 1);
      const dump = JSON.parse((await adminGet(admin, '/config_dump')).body) as JsonObject;
      assert.match(JSON.stringify(dump), /"backend"/);
    });

    it('an EDS change moves traffic to the new endpoint', async () => {
      push({ ...base, [ENDPOINT_TYPE]: [loadAssignment('backend', [b.port])] });
      await until('traffic on b', async () => (await served()).every((x) => x === 'b'));
    });

    it('an RDS change takes effect for new requests', async () => {
      push({
        ...base,
        [ENDPOINT_TYPE]: [loadAssignment('backend', [b.port])],
        [ROUTE_TYPE]: [
          routes('main-routes', [
            { match: { prefix: '/teapot' }, direct_response: { status: 418 } },
            { match: { prefix: '/' }, route: { cluster: 'backend' } },
          ]),
        ],
      });
      await until('new route', async () => (await served('/teapot')).every((x) => x === 'status 418'));
      assert.deepEqual(await served('/'), ['b', 'b']);
    });

    it('a bad cluster is NACKed naming the field; the last good config keeps serving', async () => {
      const nacksBefore = xds.nacks.length;
      push({
        ...base,
        [CLUSTER_TYPE]: [edsCluster('backend'), { ...edsCluster('broken'), lb_policy: 'CLUSTER_PROVIDED' }],
        [ENDPOINT_TYPE]: [loadAssignment('backend', [b.port])],
      });
      await until('NACK', () => xds.nacks.length > nacksBefore);
      const nack = xds.nacks[xds.nacks.length - 1]!;
      assert.equal(nack.typeUrl, CLUSTER_TYPE);
      assert.match(nack.errorDetail.message ?? '', /lb_policy/);
      assert.deepEqual(await served('/'), ['b', 'b']);
    });

    it('a removed cluster: its route answers 503 NC', async () => {
      push({ ...base, [CLUSTER_TYPE]: [] });
      await until('cluster gone', async () => (await served('/')).every((x) => x === 'status 503'));
    });
  });
}
