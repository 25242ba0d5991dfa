// Herald without its control plane: when the management server goes away,
// traffic keeps flowing on the last config and control_plane.connected_state
// drops to 0; when a server comes back on the same address, Herald reconnects
// (with backoff), connected_state is 1 again, and the new snapshot takes effect.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JsonObject } from '../../src/config/proto-json.js';
import { Server } from '../../src/server/server.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { request, startUpstream, stat, type Upstream } from '../helpers/harness.js';
import { edsCluster, loadAssignment, rdsListener, routeConfig, waitFor, xdsClusterYaml } from './helpers.js';

const NODE = 'herald-reconnect';

function bootstrap(xdsPort: number, apiType: 'GRPC' | 'DELTA_GRPC'): string {
  return `
node: { id: ${NODE}, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
  ads_config:
    api_type: ${apiType}
    transport_api_version: V3
    grpc_services: [{ envoy_grpc: { cluster_name: xds } }]
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
${xdsClusterYaml(xdsPort)}
`;
}

function snapshot(version: string, upstreamPort: number) {
  const resources: Record<string, JsonObject[]> = {
    [CLUSTER_TYPE]: [edsCluster('backend')],
    [ENDPOINT_TYPE]: [loadAssignment('backend', [upstreamPort])],
    [LISTENER_TYPE]: [rdsListener('ingress', 'main-routes')],
    [ROUTE_TYPE]: [routeConfig('main-routes', 'backend')],
  };
  return { version, resources };
}

for (const apiType of ['GRPC', 'DELTA_GRPC'] as const) {
  describe(`Herald while its control plane is away and after it returns (${apiType})`, () => {
    let a: Upstream;
    let b: Upstream;
    let xds: XdsServer;
    let xdsPort: number;
    let h: Server;
    let admin: number;

    before(async () => {
      a = await startUpstream('a');
      b = await startUpstream('b');
      const cache = new SnapshotCache();
      cache.setSnapshot(NODE, snapshot('1', a.port));
      xds = new XdsServer(cache, { controlPlaneId: 'first' });
      xdsPort = await xds.listen('127.0.0.1:0');
      h = await Server.create({ configYaml: bootstrap(xdsPort, apiType) });
      await h.start();
      admin = h.admin!.boundPort;
    });
    after(async () => {
      await h.stop();
      await xds.close();
      await a.close();
      await b.close();
    });

    const served = async () => {
      const r = await request(h.listenerPort('ingress'));
      return r.status === 200 ? String(r.headers['x-upstream']) : `status ${r.status}`;
    };

    it('is connected and serving from the first control plane', async () => {
      assert.equal(await served(), 'a');
      assert.equal(await stat(admin, 'control_plane.connected_state'), 1);
    });

    it('keeps serving the last config when the control plane goes away', async () => {
      await xds.close();
      await waitFor(
        'connected_state 0',
        async () => (await stat(admin, 'control_plane.connected_state')) === 0,
      );
      for (let i = 0; i < 5; i++) assert.equal(await served(), 'a');
      // Still serving after a few reconnect attempts have failed.
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(await stat(admin, 'control_plane.connected_state'), 0);
      assert.equal(await served(), 'a');
    });

    it('reconnects to a new server on the same address and takes its snapshot', async () => {
      const cache = new SnapshotCache();
      cache.setSnapshot(NODE, snapshot('2', b.port));
      xds = new XdsServer(cache, { controlPlaneId: 'second' });
      assert.equal(await xds.listen(`127.0.0.1:${xdsPort}`), xdsPort);
      await waitFor(
        'connected_state 1',
        async () => (await stat(admin, 'control_plane.connected_state')) === 1,
        15_000,
      );
      await waitFor('traffic on b', async () => (await served()) === 'b', 15_000);
      assert.equal(xds.nacks.length, 0);
    });
  });
}
