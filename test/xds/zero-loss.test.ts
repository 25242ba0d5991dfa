// Updates under load lose nothing: steady HTTP/1.1 and HTTP/2 traffic while a
// control plane pushes 200 updates (weights flipping, clusters added and
// removed, endpoints churning). Every request must succeed: none of these
// updates takes away what the traffic needs.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import type { JsonObject } from '../../src/config/proto-json.js';
import { Server } from '../../src/server/server.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { edsCluster, loadAssignment, rdsListener, xdsClusterYaml } from './helpers.js';

const UPDATES = 200;

function bootstrap(xdsPort: number): string {
  return `
node: { id: zero-loss, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
  ads_config: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] }
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
${xdsClusterYaml(xdsPort)}
`;
}

for (const concurrency of [1, 2])
  describe(`zero loss under 200 xDS updates (${concurrency === 1 ? 'one process' : 'two workers'})`, () => {
    let ups: Upstream[];
    let cache: SnapshotCache;
    let xds: XdsServer;
    let h: Server;
    let version = 0;

    const snapshot = (i: number) => {
      const [a, b, c] = ups.map((u) => u.port) as [number, number, number];
      const blueEndpoints = [[a], [a, b], [b]][i % 3]!;
      const greenEndpoints = [[c], [b, c]][i % 2]!;
      const wBlue = (i * 7) % 101;
      const clusters: JsonObject[] = [edsCluster('blue'), edsCluster('green')];
      const endpoints: JsonObject[] = [
        loadAssignment('blue', blueEndpoints),
        loadAssignment('green', greenEndpoints),
      ];
      // A cluster that comes and goes; no route uses it.
      if (i % 2) {
        clusters.push(edsCluster(`extra-${i % 4}`));
        endpoints.push(loadAssignment(`extra-${i % 4}`, [a]));
      }
      cache.setSnapshot('zero-loss', {
        version: String(++version),
        resources: {
          [CLUSTER_TYPE]: clusters,
          [ENDPOINT_TYPE]: endpoints,
          [LISTENER_TYPE]: [rdsListener('ingress', 'routes')],
          [ROUTE_TYPE]: [
            {
              name: 'routes',
              virtual_hosts: [
                {
                  name: 'all',
                  domains: ['*'],
                  routes: [
                    {
                      match: { prefix: '/' },
                      route: {
                        weighted_clusters: {
                          clusters: [
                            { name: 'blue', weight: wBlue },
                            { name: 'green', weight: 100 - wBlue + 1 },
                          ],
                        },
                      },
                    },
                  ],
                },
              ],
            },
          ],
        },
      });
    };

    before(async () => {
      ups = [await startUpstream('a'), await startUpstream('b'), await startUpstream('c')];
      cache = new SnapshotCache();
      xds = new XdsServer(cache, { controlPlaneId: 'test' });
      const port = await xds.listen('127.0.0.1:0');
      snapshot(0);
      h = await Server.create({ configYaml: bootstrap(port), concurrency });
      await h.start();
    });
    after(async () => {
      await h.stop();
      await xds.close();
      for (const u of ups) await u.close();
    });

    it('HTTP/1.1 and HTTP/2 requests all succeed while the config changes', async () => {
      const port = h.listenerPort('ingress');
      let running = true;
      const result = { h1: 0, h2: 0, failed: [] as string[] };
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
      const h1Loop = async () => {
        while (running) {
          const status = await new Promise<string>((resolve) => {
            const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
              res.resume();
              res.on('end', () => resolve(String(res.statusCode)));
            });
            req.on('error', (e) => resolve(e.message));
          });
          result.h1++;
          if (status !== '200') result.failed.push(`h1 ${status}`);
        }
      };
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const h2Loop = async () => {
        while (running) {
          const status = await new Promise<string>((resolve) => {
            const s = session.request({ ':path': '/' });
            let code = '';
            s.on('response', (hd) => {
              code = String(hd[':status']);
            });
            s.on('error', (e) => resolve(e.message));
            s.resume();
            s.on('end', () => resolve(code));
          });
          result.h2++;
          if (status !== '200') result.failed.push(`h2 ${status}`);
        }
      };
      const loops = [h1Loop(), h1Loop(), h1Loop(), h1Loop(), h2Loop(), h2Loop(), h2Loop(), h2Loop()];
      const t0 = Date.now();
      for (let i = 1; i <= UPDATES; i++) {
        snapshot(i);
        await new Promise((r) => setTimeout(r, 10));
      }
      // Let the last updates land while traffic continues.
      await new Promise((r) => setTimeout(r, 300));
      running = false;
      await Promise.all(loops);
      const seconds = (Date.now() - t0) / 1000;
      session.close();
      agent.destroy();
      const acks = xds.acks.filter((a) => a.typeUrl === CLUSTER_TYPE).length;
      console.log(
        `zero-loss (concurrency ${concurrency}): ${result.h1} HTTP/1.1 + ${result.h2} HTTP/2 requests in ${seconds.toFixed(1)} s during ${UPDATES} updates (${acks} CDS ACKs); failed: ${result.failed.length}`,
      );
      assert.equal(xds.nacks.length, 0, 'every update was accepted');
      assert.deepEqual(result.failed.slice(0, 5), []);
      assert.ok(result.h1 > 100 && result.h2 > 100, `h1=${result.h1} h2=${result.h2}`);
    });
  });
