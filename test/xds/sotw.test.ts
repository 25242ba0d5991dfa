// State-of-the-world xDS between Herald's client and Herald's management
// server over real gRPC on 127.0.0.1, on ADS and on the per-type services.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { edsCluster, loadAssignment, RecordingClient, rdsListener, routeConfig, waitFor } from './helpers.js';

function baseResources(version: string) {
  return {
    version,
    resources: {
      [LISTENER_TYPE]: [rdsListener('l1', 'r1'), rdsListener('l2', 'r2')],
      [ROUTE_TYPE]: [routeConfig('r1', 'c1'), routeConfig('r2', 'c2')],
      [CLUSTER_TYPE]: [edsCluster('c1'), edsCluster('c2')],
      [ENDPOINT_TYPE]: [loadAssignment('c1', [1001]), loadAssignment('c2', [1002])],
    },
  };
}

for (const ads of [true, false]) {
  describe(`SotW xDS over ${ads ? 'ADS' : 'the per-type services'}`, () => {
    let cache: SnapshotCache;
    let server: XdsServer;
    let port: number;
    const clients: RecordingClient[] = [];

    before(async () => {
      cache = new SnapshotCache();
      server = new XdsServer(cache, { controlPlaneId: 'herald-test' });
      port = await server.listen();
    });
    after(async () => {
      await server.close();
    });
    afterEach(() => {
      for (const c of clients.splice(0)) c.client.close();
    });

    function client(nodeId: string, extra = {}): RecordingClient {
      const c = new RecordingClient(`127.0.0.1:${port}`, 'GRPC', { ads, ...extra }, nodeId);
      clients.push(c);
      return c;
    }

    it('delivers wildcard LDS/CDS and named RDS/EDS, and ACKs each response with its version_info and nonce', async () => {
      const node = `wild-${ads}`;
      cache.setSnapshot(node, baseResources('v1'));
      const c = client(node);
      c.client.subscribe(LISTENER_TYPE);
      c.client.subscribe(CLUSTER_TYPE);
      c.client.subscribe(ROUTE_TYPE, ['r1']);
      c.client.subscribe(ENDPOINT_TYPE, ['c2']);
      await c.client.start();
      await waitFor(
        'all four types',
        () => c.names(ENDPOINT_TYPE).length === 1 && c.names(ROUTE_TYPE).length === 1,
      );
      await waitFor(
        'LDS and CDS',
        () => c.names(LISTENER_TYPE).length === 2 && c.names(CLUSTER_TYPE).length === 2,
      );
      assert.deepEqual(c.names(LISTENER_TYPE), ['l1', 'l2']);
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1', 'c2']);
      assert.deepEqual(c.names(ROUTE_TYPE), ['r1']);
      assert.deepEqual(c.names(ENDPOINT_TYPE), ['c2']);
      const route = c.client.resources(ROUTE_TYPE).get('r1')!.resource;
      assert.equal(route['@type'], ROUTE_TYPE);
      assert.deepEqual(route.virtual_hosts, routeConfig('r1', 'c1').virtual_hosts);

      // Every response was ACKed with its own version and nonce.
      await waitFor('4 ACKs', () => server.acks.filter((a) => a.nodeId === node).length === 4);
      const responses: { typeUrl: string; nonce: string; versionInfo: string; resourceNames: string[] }[] =
        [];
      server.on('response', (r) => responses.push(r));
      for (const ack of server.acks.filter((a) => a.nodeId === node)) {
        assert.equal(ack.versionInfo, 'v1');
        assert.match(ack.nonce, /^\d+$/);
        assert.equal(ack.method.includes('AggregatedDiscoveryService'), ads);
      }
      assert.equal(c.client.stats.control_plane.connected_state, 1);
      for (const s of ['lds', 'rds', 'cds', 'eds'] as const) {
        assert.equal(c.client.stats[s].update_attempt, 1, s);
        assert.equal(c.client.stats[s].update_success, 1, s);
        assert.equal(c.client.stats[s].version_text, 'v1');
        assert.notEqual(c.client.stats[s].version, 0n);
      }
      const first = c.updatesOf(CLUSTER_TYPE)[0]!.update;
      assert.deepEqual([...first.added.keys()].sort(), ['c1', 'c2']);
      assert.equal(first.versionInfo, 'v1');

      // A new snapshot is pushed; only what changed is reported as updated.
      const next = baseResources('v2');
      next.resources[CLUSTER_TYPE] = [edsCluster('c1', '1s'), edsCluster('c2')];
      cache.setSnapshot(node, next);
      await waitFor('CDS v2', () => c.client.versionInfo(CLUSTER_TYPE) === 'v2');
      const cds2 = c.updatesOf(CLUSTER_TYPE)[1]!.update;
      assert.deepEqual([...cds2.updated.keys()], ['c1']);
      assert.equal(cds2.added.size, 0);
      assert.equal(cds2.updated.get('c1')!.resource.connect_timeout, '1s');
      await waitFor('ACK of v2 for every type', () =>
        [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE].every((t) =>
          server.acks.some((a) => a.nodeId === node && a.typeUrl === t && a.versionInfo === 'v2'),
        ),
      );
      for (const r of responses) {
        const ack = server.acks.find((a) => a.nodeId === node && a.nonce === r.nonce);
        assert.ok(ack, `response ${r.nonce} was ACKed`);
        assert.equal(ack.versionInfo, r.versionInfo);
      }
    });

    it('treats an absent LDS/CDS resource as removed but an absent RDS/EDS one as unchanged', async () => {
      const node = `removal-${ads}`;
      cache.setSnapshot(node, baseResources('v1'));
      const c = client(node);
      c.client.subscribe(LISTENER_TYPE);
      c.client.subscribe(ROUTE_TYPE, ['r1', 'r2']);
      await c.client.start();
      await waitFor('initial', () => c.names(LISTENER_TYPE).length === 2 && c.names(ROUTE_TYPE).length === 2);
      const next = baseResources('v2');
      next.resources[LISTENER_TYPE] = [rdsListener('l1', 'r1')];
      next.resources[ROUTE_TYPE] = [routeConfig('r1', 'c2')];
      cache.setSnapshot(node, next);
      await waitFor('LDS v2', () => c.client.versionInfo(LISTENER_TYPE) === 'v2');
      await waitFor('RDS v2', () => c.client.versionInfo(ROUTE_TYPE) === 'v2');
      const lds = c.updatesOf(LISTENER_TYPE).at(-1)!.update;
      assert.deepEqual(lds.removed, ['l2']);
      assert.deepEqual([...lds.state.keys()], ['l1']);
      assert.deepEqual(c.names(LISTENER_TYPE), ['l1']);
      const rds = c.updatesOf(ROUTE_TYPE).at(-1)!.update;
      assert.deepEqual(rds.removed, []);
      assert.deepEqual([...rds.updated.keys()], ['r1']);
      assert.deepEqual(c.names(ROUTE_TYPE), ['r1', 'r2']);
    });

    it('NACKs with error_detail and the previous version, keeps the last good config, and is not sent the same version again', async () => {
      const node = `nack-${ads}`;
      const v = (cds: string, lds: string) => ({
        version: { [CLUSTER_TYPE]: cds, [LISTENER_TYPE]: lds },
        resources: {
          [LISTENER_TYPE]: [rdsListener(`l-${lds}`, 'r1')],
          [CLUSTER_TYPE]: [edsCluster('c1'), ...(cds === 'c2' ? [edsCluster('bad')] : [])],
        },
      });
      cache.setSnapshot(node, v('c1', 'l1'));
      const c = client(node);
      c.reject = (typeUrl, u) =>
        typeUrl === CLUSTER_TYPE && u.added.has('bad') ? 'cluster bad: no thanks' : undefined;
      c.client.subscribe(CLUSTER_TYPE);
      c.client.subscribe(LISTENER_TYPE);
      await c.client.start();
      await waitFor(
        'c1',
        () => c.client.versionInfo(CLUSTER_TYPE) === 'c1' && c.client.versionInfo(LISTENER_TYPE) === 'l1',
      );
      const cdsResponses: { nonce: string; versionInfo: string }[] = [];
      server.on('response', (r) => {
        if (r.nodeId === node && r.typeUrl === CLUSTER_TYPE) cdsResponses.push(r);
      });

      let rdsRequests = 0;
      server.on('request', (r) => {
        if (r.nodeId === node && r.typeUrl === ROUTE_TYPE) rdsRequests++;
      });
      cache.setSnapshot(node, v('c2', 'l1'));
      const nack = await waitFor('NACK', () => server.nacks.find((n) => n.nodeId === node));
      assert.equal(nack.typeUrl, CLUSTER_TYPE);
      assert.equal(nack.versionInfo, 'c1', 'a NACK carries the last accepted version');
      assert.equal(nack.rejectedVersion, 'c2');
      assert.equal(nack.nonce, cdsResponses[0]!.nonce, 'a NACK carries the nonce of the rejected response');
      assert.deepEqual(nack.errorDetail, { code: 3, message: 'cluster bad: no thanks' });
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1']);
      assert.equal(c.client.versionInfo(CLUSTER_TYPE), 'c1');
      assert.equal(c.client.stats.cds.update_rejected, 1);
      assert.equal(c.client.stats.cds.version_text, 'c1');

      // LDS changes, CDS does not: the stream is busy, but c2 is not sent again.
      cache.setSnapshot(node, v('c2', 'l2'));
      await waitFor('LDS l2 ACK', () =>
        server.acks.some((a) => a.nodeId === node && a.typeUrl === LISTENER_TYPE && a.versionInfo === 'l2'),
      );
      // A subscription change on the stream does not bring c2 back either.
      c.client.subscribe(ROUTE_TYPE, ['r1']);
      // (The snapshot has no RDS type: the request gets no answer; wait until the server saw it.)
      await waitFor('RDS request', () => rdsRequests > 0);
      assert.deepEqual(
        cdsResponses.map((r) => r.versionInfo),
        ['c2'],
      );
      assert.equal(server.nacks.filter((n) => n.nodeId === node).length, 1);

      // A fixed snapshot is accepted.
      cache.setSnapshot(node, v('c3', 'l2'));
      await waitFor('c3', () => c.client.versionInfo(CLUSTER_TYPE) === 'c3');
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1']);
      await waitFor('c3 ACK', () => server.acks.some((a) => a.nodeId === node && a.versionInfo === 'c3'));
    });

    it('changes named subscriptions: sends only what is named, adds and removes names', async () => {
      const node = `named-${ads}`;
      cache.setSnapshot(node, baseResources('v1'));
      const c = client(node);
      c.client.subscribe(ENDPOINT_TYPE, ['c1']);
      await c.client.start();
      await waitFor('c1', () => c.names(ENDPOINT_TYPE).length === 1);
      c.client.subscribe(ENDPOINT_TYPE, ['c2']);
      await waitFor('c1 and c2', () => c.names(ENDPOINT_TYPE).length === 2);
      const req = [...server.acks].reverse().find((a) => a.nodeId === node);
      assert.ok(req);
      c.client.unsubscribe(ENDPOINT_TYPE, ['c1']);
      assert.deepEqual(c.names(ENDPOINT_TYPE), ['c2']);
      // The server follows the subscription: a change to c1 is no longer sent, one to c2 is.
      const next = baseResources('v2');
      next.resources[ENDPOINT_TYPE] = [loadAssignment('c1', [2001]), loadAssignment('c2', [2002])];
      const sent: string[][] = [];
      server.on('response', (r) => {
        if (r.nodeId === node) sent.push(r.resourceNames);
      });
      cache.setSnapshot(node, next);
      await waitFor('v2', () => c.client.versionInfo(ENDPOINT_TYPE) === 'v2');
      assert.deepEqual(sent.at(-1), ['c2']);
      assert.deepEqual(c.names(ENDPOINT_TYPE), ['c2']);
      const eps = c.client.resources(ENDPOINT_TYPE).get('c2')!.resource as {
        endpoints: {
          lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[];
        }[];
      };
      assert.equal(eps.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address.port_value, 2002);
    });

    it('reports a subscription that got nothing within initial_fetch_timeout', async () => {
      const node = `timeout-${ads}`;
      cache.setSnapshot(node, baseResources('v1'));
      const c = client(node, { initialFetchTimeoutMs: 300 });
      c.client.subscribe(ROUTE_TYPE, ['r1', 'missing']);
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('timeout', () => c.timeouts.length > 0);
      assert.deepEqual(c.timeouts, [{ typeUrl: ROUTE_TYPE, names: ['missing'] }]);
      assert.equal(c.client.stats.rds.init_fetch_timeout, 1);
      assert.equal(c.client.stats.cds.init_fetch_timeout, 0);
      assert.deepEqual(c.names(ROUTE_TYPE), ['r1']);
    });
  });
}

describe('XdsClient on a channel it is given', () => {
  it('speaks xDS over the caller’s channel and leaves it open on close()', async () => {
    const cache = new SnapshotCache();
    const server = new XdsServer(cache);
    const port = await server.listen();
    cache.setSnapshot('chan', baseResources('v1'));
    const channel = new grpc.Channel(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {});
    const c = new RecordingClient('', 'GRPC', { channel }, 'chan');
    try {
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('v1', () => c.client.versionInfo(CLUSTER_TYPE) === 'v1');
      c.client.close();
      assert.notEqual(channel.getConnectivityState(false), grpc.connectivityState.SHUTDOWN);
    } finally {
      channel.close();
      await server.close();
    }
  });
});

describe('SotW xDS across a management server restart', () => {
  it('reconnects with backoff, resends subscriptions with the last accepted version, and resumes', async () => {
    const cache = new SnapshotCache();
    let server = new XdsServer(cache);
    const port = await server.listen();
    const node = 'restart';
    cache.setSnapshot(node, baseResources('v1'));
    const c = new RecordingClient(`127.0.0.1:${port}`, 'GRPC', {}, node);
    try {
      c.client.subscribe(CLUSTER_TYPE);
      c.client.subscribe(ENDPOINT_TYPE, ['c1']);
      await c.client.start();
      await waitFor(
        'v1',
        () => c.client.versionInfo(ENDPOINT_TYPE) === 'v1' && c.client.versionInfo(CLUSTER_TYPE) === 'v1',
      );
      assert.equal(c.client.stats.control_plane.connected_state, 1);

      await server.close();
      await waitFor('disconnected', () => c.client.stats.control_plane.connected_state === 0);
      await waitFor(
        'update_failure',
        () => c.client.stats.cds.update_failure >= 1 && c.client.stats.eds.update_failure >= 1,
      );
      // The last good config stays while the control plane is away.
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1', 'c2']);

      server = new XdsServer(cache);
      const requests: { typeUrl: string; versionInfo: string; names: string[]; node: unknown }[] = [];
      server.on('request', (r) =>
        requests.push({
          typeUrl: r.typeUrl,
          versionInfo: r.request.version_info as string,
          names: r.request.resource_names as string[],
          node: r.node,
        }),
      );
      await server.listen(`127.0.0.1:${port}`);
      await waitFor(
        'reconnected',
        () => c.client.stats.control_plane.connected_state === 1 && requests.length >= 2,
      );
      const cds = requests.find((r) => r.typeUrl === CLUSTER_TYPE)!;
      const eds = requests.find((r) => r.typeUrl === ENDPOINT_TYPE)!;
      assert.equal(cds.versionInfo, 'v1');
      assert.deepEqual(cds.names, []);
      assert.equal(eds.versionInfo, 'v1');
      assert.deepEqual(eds.names, ['c1']);
      // The node is sent on the new stream.
      const withNode = requests.find((r) => r.node !== undefined) as { node: Record<string, unknown> };
      assert.equal(withNode.node.id, node);
      assert.equal(withNode.node.user_agent_name, 'herald');
      assert.deepEqual(withNode.node.metadata, { team: 'herald', n: 1 });

      cache.setSnapshot(node, { ...baseResources('v2') });
      await waitFor('v2 after restart', () => c.client.versionInfo(ENDPOINT_TYPE) === 'v2');
      await waitFor('v2 ACK', () =>
        server.acks.some((a) => a.typeUrl === ENDPOINT_TYPE && a.versionInfo === 'v2'),
      );
    } finally {
      c.client.close();
      await server.close();
    }
  });
});
