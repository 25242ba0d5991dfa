// Interop: the proxyless gRPC client of @grpc/grpc-js-xds (an xDS client
// Herald did not write) takes LDS, RDS, CDS and EDS from Herald's management
// server and routes real gRPC calls to the backends they name. Switching the
// weighted_clusters weights in a new snapshot moves the traffic; a route
// config the client rejects is NACKed and the traffic stays where it was.
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { JsonObject } from '../../src/config/proto-json.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { edsCluster, HCM_TYPE, loadAssignment, ROUTER_TYPE, waitFor } from './helpers.js';

const NODE = 'grpc-proxyless';
const SERVICE = 'echo.herald.test';
const bytes = (b: Buffer) => b;

async function startBackend(name: string): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(
    {
      Echo: {
        path: '/test.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: bytes,
        requestDeserialize: bytes,
        responseSerialize: bytes,
        responseDeserialize: bytes,
      },
    },
    {
      Echo: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.from(name)),
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { server, port };
}

function apiListener(): JsonObject {
  return {
    name: SERVICE,
    api_listener: {
      api_listener: {
        '@type': HCM_TYPE,
        stat_prefix: 'echo',
        rds: { route_config_name: 'echo-route', config_source: { ads: {}, resource_api_version: 'V3' } },
        http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
      },
    },
  };
}

function route(weightA: number, weightB: number): JsonObject {
  return {
    name: 'echo-route',
    virtual_hosts: [
      {
        name: 'echo',
        domains: [SERVICE],
        routes: [
          {
            match: { prefix: '' },
            route: {
              weighted_clusters: {
                clusters: [
                  { name: 'cluster-a', weight: weightA },
                  { name: 'cluster-b', weight: weightB },
                ],
              },
            },
          },
        ],
      },
    ],
  };
}

describe('interop: @grpc/grpc-js-xds proxyless client against Herald’s management server', () => {
  const cache = new SnapshotCache();
  const xds = new XdsServer(cache, { controlPlaneId: 'herald' });
  const backends: { server: grpc.Server; port: number }[] = [];
  let child: ChildProcess;
  let replies: ((m: { counts: Record<string, number> }) => void)[] = [];

  function snapshot(version: string, weights: [number, number]) {
    cache.setSnapshot(NODE, {
      version,
      resources: {
        [LISTENER_TYPE]: [apiListener()],
        [ROUTE_TYPE]: [route(...weights)],
        [CLUSTER_TYPE]: [edsCluster('cluster-a'), edsCluster('cluster-b')],
        [ENDPOINT_TYPE]: [
          loadAssignment('cluster-a', [backends[0]!.port]),
          loadAssignment('cluster-b', [backends[1]!.port]),
        ],
      },
    });
  }

  function calls(n: number): Promise<Record<string, number>> {
    return new Promise((resolve) => {
      replies.push((m) => resolve(m.counts));
      child.send({ cmd: 'call', target: `xds:///${SERVICE}`, n });
    });
  }

  before(async () => {
    backends.push(await startBackend('backend-a'), await startBackend('backend-b'));
    const port = await xds.listen();
    snapshot('1', [100, 0]);
    const bootstrap = {
      xds_servers: [
        {
          server_uri: `127.0.0.1:${port}`,
          channel_creds: [{ type: 'insecure' }],
          server_features: ['xds_v3'],
        },
      ],
      node: { id: NODE, cluster: 'interop', locality: { region: 'local' } },
    };
    child = fork(fileURLToPath(new URL('./fixtures/grpc-xds-client.js', import.meta.url)), {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(bootstrap) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('message', () => resolve());
    });
    child.on('message', (m: { counts?: Record<string, number> }) => {
      if (m.counts) replies.shift()?.(m as { counts: Record<string, number> });
    });
    replies = [];
  });

  after(async () => {
    child?.disconnect();
    child?.kill();
    await xds.close();
    for (const b of backends) b.server.forceShutdown();
  });

  it('routes calls to the cluster the weights name, and moves them when a new snapshot switches the weights', async () => {
    assert.deepEqual(await calls(10), { 'backend-a': 10 });
    // The client asked for exactly what the spec says a proxyless client asks for.
    const acked = new Set(xds.acks.filter((a) => a.nodeId === NODE).map((a) => a.typeUrl));
    for (const t of [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE]) assert.ok(acked.has(t), t);
    for (const a of xds.acks.filter((x) => x.nodeId === NODE)) assert.equal(a.versionInfo, '1');

    snapshot('2', [0, 100]);
    await waitFor('RDS version 2 ACKed', () =>
      xds.acks.some((a) => a.nodeId === NODE && a.typeUrl === ROUTE_TYPE && a.versionInfo === '2'),
    );
    let counts: Record<string, number> = {};
    await waitFor(
      'traffic on backend-b',
      async () => {
        counts = await calls(10);
        return counts['backend-b'] === 10;
      },
      15_000,
    );
    assert.deepEqual(await calls(10), { 'backend-b': 10 });
  });

  it('gets a NACK with error_detail for a route config the client rejects, and traffic stays put', async () => {
    snapshot('3', [0, 0]); // grpc-js-xds rejects a weighted_clusters sum of 0
    const nack = await waitFor('NACK from grpc-js-xds', () =>
      xds.nacks.find((n) => n.nodeId === NODE && n.typeUrl === ROUTE_TYPE),
    );
    assert.equal(nack.versionInfo, '2', 'the NACK carries the last accepted version');
    assert.equal(nack.rejectedVersion, '3');
    assert.match(nack.errorDetail.message, /sum of weights is 0/);
    assert.deepEqual(await calls(10), { 'backend-b': 10 });
    // Not sent again: after the NACK the route type gets no further response at version 3.
    const sent = xds.acks.filter((a) => a.nodeId === NODE && a.typeUrl === ROUTE_TYPE).length;
    snapshot('4', [100, 0]);
    await waitFor('RDS version 4 ACKed', () =>
      xds.acks.some((a) => a.nodeId === NODE && a.typeUrl === ROUTE_TYPE && a.versionInfo === '4'),
    );
    assert.equal(xds.acks.filter((a) => a.nodeId === NODE && a.typeUrl === ROUTE_TYPE).length, sent + 1);
    assert.equal(xds.nacks.filter((n) => n.nodeId === NODE).length, 1);
  });
});
