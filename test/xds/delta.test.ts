// Incremental (delta) xDS between Herald's client and Herald's management
// server over real gRPC on 127.0.0.1, on ADS and on the per-type services.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  CLUSTER_TYPE,
  ENDPOINT_TYPE,
  encodeResource,
  LISTENER_TYPE,
  ROUTE_TYPE,
  SECRET_TYPE,
} from '../../src/xds/resources.js';
import type { ResponseEvent } from '../../src/xds/server/events.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { edsCluster, loadAssignment, RecordingClient, rdsListener, routeConfig, waitFor } from './helpers.js';

function resources(version: string, clusters = ['c1', 'c2']) {
  return {
    version: {
      [LISTENER_TYPE]: version,
      [ROUTE_TYPE]: version,
      [CLUSTER_TYPE]: version,
      [ENDPOINT_TYPE]: version,
    },
    resources: {
      [LISTENER_TYPE]: [rdsListener('l1', 'r1')],
      [ROUTE_TYPE]: [routeConfig('r1', 'c1'), routeConfig('r2', 'c2')],
      [CLUSTER_TYPE]: clusters.map((c) => edsCluster(c)),
      [ENDPOINT_TYPE]: [loadAssignment('c1', [1001]), loadAssignment('c2', [1002])],
    },
  };
}

for (const ads of [true, false]) {
  describe(`delta xDS over ${ads ? 'ADS' : 'the per-type services'}`, () => {
    let cache: SnapshotCache;
    let server: XdsServer;
    let port: number;
    const clients: RecordingClient[] = [];
    const responses: ResponseEvent[] = [];
    const requests: { nodeId: string; typeUrl: string; request: Record<string, unknown> }[] = [];

    before(async () => {
      cache = new SnapshotCache();
      server = new XdsServer(cache);
      server.on('response', (r) => responses.push(r));
      server.on('request', (r) => requests.push(r));
      port = await server.listen();
    });
    after(async () => {
      await server.close();
    });
    afterEach(() => {
      for (const c of clients.splice(0)) c.client.close();
    });

    function client(nodeId: string, extra = {}): RecordingClient {
      const c = new RecordingClient(`127.0.0.1:${port}`, 'DELTA_GRPC', { ads, ...extra }, nodeId);
      clients.push(c);
      return c;
    }
    const sentTo = (node: string, typeUrl: string) =>
      responses.filter((r) => r.nodeId === node && r.typeUrl === typeUrl);

    it('delivers wildcard and named resources with per-resource versions and ACKs by nonce', async () => {
      const node = `d-wild-${ads}`;
      cache.setSnapshot(node, resources('v1'));
      const c = client(node);
      c.client.subscribe(LISTENER_TYPE);
      c.client.subscribe(CLUSTER_TYPE);
      c.client.subscribe(ROUTE_TYPE, ['r1']);
      c.client.subscribe(ENDPOINT_TYPE, ['c1', 'c2']);
      await c.client.start();
      await waitFor('all types', () =>
        [LISTENER_TYPE, CLUSTER_TYPE, ROUTE_TYPE, ENDPOINT_TYPE].every(
          (t) => c.client.versionInfo(t) === 'v1',
        ),
      );
      assert.deepEqual(c.names(LISTENER_TYPE), ['l1']);
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1', 'c2']);
      assert.deepEqual(c.names(ROUTE_TYPE), ['r1']);
      assert.deepEqual(c.names(ENDPOINT_TYPE), ['c1', 'c2']);
      // The per-resource version is the server's: the hash of the encoded resource.
      const expected = encodeResource(CLUSTER_TYPE, edsCluster('c1')).version;
      assert.equal(c.client.resources(CLUSTER_TYPE).get('c1')!.version, expected);
      await waitFor('4 ACKs', () => server.acks.filter((a) => a.nodeId === node).length === 4);
      for (const ack of server.acks.filter((a) => a.nodeId === node)) {
        assert.equal(ack.kind, 'delta');
        assert.equal(ack.versionInfo, '');
        const resp = responses.find((r) => r.nonce === ack.nonce)!;
        assert.equal(resp.typeUrl, ack.typeUrl);
      }
      // The first request of each type subscribed as the client asked: legacy wildcard (nothing named) or names.
      const firstReq = (t: string) => requests.find((r) => r.nodeId === node && r.typeUrl === t)!.request;
      assert.deepEqual(firstReq(CLUSTER_TYPE).resource_names_subscribe, []);
      assert.deepEqual(firstReq(ENDPOINT_TYPE).resource_names_subscribe, ['c1', 'c2']);
      assert.equal(c.client.stats.control_plane.connected_state, 1);
      assert.equal(c.client.stats.cds.update_success, 1);
    });

    it('sends only what changed and removals in removed_resources', async () => {
      const node = `d-change-${ads}`;
      cache.setSnapshot(node, resources('v1', ['c1', 'c2', 'c3']));
      const c = client(node);
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('v1', () => c.names(CLUSTER_TYPE).length === 3);
      const next = resources('v2', ['c1', 'c3']);
      next.resources[CLUSTER_TYPE] = [edsCluster('c1', '2s'), edsCluster('c3')];
      cache.setSnapshot(node, next);
      await waitFor('v2', () => c.client.versionInfo(CLUSTER_TYPE) === 'v2');
      const last = sentTo(node, CLUSTER_TYPE).at(-1)!;
      assert.deepEqual(last.resourceNames, ['c1']);
      assert.deepEqual(last.removed, ['c2']);
      const u = c.updatesOf(CLUSTER_TYPE).at(-1)!.update;
      assert.deepEqual([...u.updated.keys()], ['c1']);
      assert.deepEqual(u.removed, ['c2']);
      assert.equal(u.versionInfo, 'v2');
      assert.deepEqual([...u.state.keys()].sort(), ['c1', 'c3']);
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1', 'c3']);
      // A snapshot with a new version but the same resources sends nothing.
      const count = sentTo(node, CLUSTER_TYPE).length;
      cache.setSnapshot(node, { ...next, version: { ...next.version, [CLUSTER_TYPE]: 'v3' } });
      c.client.subscribe(ROUTE_TYPE, ['r1']);
      await waitFor('RDS', () => c.names(ROUTE_TYPE).length === 1);
      assert.equal(sentTo(node, CLUSTER_TYPE).length, count);
    });

    it('NACKs with error_detail, keeps the last good resources, and gets a resource again only when it changes', async () => {
      const node = `d-nack-${ads}`;
      cache.setSnapshot(node, resources('v1'));
      const c = client(node);
      c.reject = (t, u) => {
        const c1 = u.updated.get('c1') ?? u.added.get('c1');
        return t === CLUSTER_TYPE && c1?.resource.connect_timeout === '9s'
          ? 'c1: timeout too long'
          : undefined;
      };
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('v1', () => c.client.versionInfo(CLUSTER_TYPE) === 'v1');
      const good = c.client.resources(CLUSTER_TYPE).get('c1')!.version;

      const bad = resources('v2');
      bad.resources[CLUSTER_TYPE] = [edsCluster('c1', '9s'), edsCluster('c2')];
      cache.setSnapshot(node, bad);
      const nack = await waitFor('NACK', () => server.nacks.find((n) => n.nodeId === node));
      assert.deepEqual(nack.errorDetail, { code: 3, message: 'c1: timeout too long' });
      assert.equal(nack.rejectedVersion, 'v2');
      assert.equal(nack.nonce, sentTo(node, CLUSTER_TYPE).at(-1)!.nonce);
      assert.equal(c.client.resources(CLUSTER_TYPE).get('c1')!.version, good);
      assert.equal(c.client.versionInfo(CLUSTER_TYPE), 'v1');
      assert.equal(c.client.stats.cds.update_rejected, 1);

      // c2 changes, c1 does not: only c2 is sent; the rejected c1 is not.
      const bad2 = resources('v3');
      bad2.resources[CLUSTER_TYPE] = [edsCluster('c1', '9s'), edsCluster('c2', '3s')];
      cache.setSnapshot(node, bad2);
      await waitFor('v3', () => c.client.versionInfo(CLUSTER_TYPE) === 'v3');
      assert.deepEqual(sentTo(node, CLUSTER_TYPE).at(-1)!.resourceNames, ['c2']);
      assert.equal(c.client.resources(CLUSTER_TYPE).get('c1')!.version, good);

      const fixed = resources('v4');
      fixed.resources[CLUSTER_TYPE] = [edsCluster('c1', '1s'), edsCluster('c2', '3s')];
      cache.setSnapshot(node, fixed);
      await waitFor('v4', () => c.client.versionInfo(CLUSTER_TYPE) === 'v4');
      assert.equal(c.client.resources(CLUSTER_TYPE).get('c1')!.resource.connect_timeout, '1s');
      assert.equal(server.nacks.filter((n) => n.nodeId === node).length, 1);
    });

    it('subscribes and unsubscribes by name, and reports named resources that do not exist', async () => {
      const node = `d-named-${ads}`;
      cache.setSnapshot(node, resources('v1'));
      const c = client(node, { initialFetchTimeoutMs: 2000 });
      c.client.subscribe(ROUTE_TYPE, ['r1', 'nope']);
      await c.client.start();
      await waitFor('r1', () => c.names(ROUTE_TYPE).length === 1);
      const first = sentTo(node, ROUTE_TYPE)[0]!;
      assert.deepEqual(first.resourceNames, ['r1']);
      assert.deepEqual(first.removed, ['nope'], 'a named resource that does not exist is reported removed');

      c.client.subscribe(ROUTE_TYPE, ['r2']);
      await waitFor('r2', () => c.names(ROUTE_TYPE).length === 2);
      const sub = requests.filter((r) => r.nodeId === node && r.typeUrl === ROUTE_TYPE).map((r) => r.request);
      assert.ok(sub.some((r) => (r.resource_names_subscribe as string[]).join() === 'r2'));

      c.client.unsubscribe(ROUTE_TYPE, ['r1']);
      await waitFor('unsubscribe sent', () =>
        requests.some(
          (r) =>
            r.nodeId === node &&
            (r.request.resource_names_unsubscribe as string[] | undefined)?.join() === 'r1',
        ),
      );
      assert.deepEqual(c.names(ROUTE_TYPE), ['r2']);
      // Subscribing again brings r1 back although it did not change.
      c.client.subscribe(ROUTE_TYPE, ['r1']);
      await waitFor('r1 again', () => c.names(ROUTE_TYPE).length === 2);
      // The missing name was answered (as removed), so no initial fetch timeout for it.
      assert.equal(c.client.stats.rds.init_fetch_timeout, 0);
    });

    it('reports initial_fetch_timeout for a type the server never answers', async () => {
      const node = `d-timeout-${ads}`;
      cache.setSnapshot(node, resources('v1')); // no SDS in this snapshot
      const c = client(node, { initialFetchTimeoutMs: 300 });
      c.client.subscribe(SECRET_TYPE, ['cert']);
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('timeout', () => c.timeouts.length > 0);
      assert.deepEqual(c.timeouts, [{ typeUrl: SECRET_TYPE, names: ['cert'] }]);
      assert.equal(c.client.stats.sds.init_fetch_timeout, 1);
      assert.equal(c.client.stats.cds.init_fetch_timeout, 0);
    });
  });
}

describe('delta xDS across a management server restart', () => {
  it('reconnects and resumes with initial_resource_versions; unchanged resources are not resent', async () => {
    const cache = new SnapshotCache();
    let server = new XdsServer(cache);
    const port = await server.listen();
    const node = 'd-restart';
    cache.setSnapshot(node, resources('v1', ['c1', 'c2']));
    const c = new RecordingClient(`127.0.0.1:${port}`, 'DELTA_GRPC', {}, node);
    try {
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      await waitFor('v1', () => c.names(CLUSTER_TYPE).length === 2);
      const versions = Object.fromEntries(
        [...c.client.resources(CLUSTER_TYPE)].map(([n, r]) => [n, r.version]),
      );
      await server.close();
      await waitFor('disconnected', () => c.client.stats.control_plane.connected_state === 0);
      assert.ok(c.client.stats.cds.update_failure >= 1);

      // While away, c2 is removed and c3 added.
      cache.setSnapshot(node, resources('v2', ['c1', 'c3']));
      server = new XdsServer(cache);
      const requests: Record<string, unknown>[] = [];
      const sent: ResponseEvent[] = [];
      server.on('request', (r) => requests.push(r.request));
      server.on('response', (r) => sent.push(r));
      await server.listen(`127.0.0.1:${port}`);
      await waitFor('v2', () => c.client.versionInfo(CLUSTER_TYPE) === 'v2');
      assert.equal(c.client.stats.control_plane.connected_state, 1);
      assert.deepEqual(requests[0]!.initial_resource_versions, versions);
      assert.deepEqual(requests[0]!.resource_names_subscribe, []);
      assert.deepEqual(sent[0]!.resourceNames, ['c3']);
      assert.deepEqual(sent[0]!.removed, ['c2']);
      assert.deepEqual(c.names(CLUSTER_TYPE), ['c1', 'c3']);
      const u = c.updatesOf(CLUSTER_TYPE).at(-1)!.update;
      assert.deepEqual([...u.added.keys()], ['c3']);
      assert.deepEqual(u.removed, ['c2']);
    } finally {
      c.client.close();
      await server.close();
    }
  });
});
