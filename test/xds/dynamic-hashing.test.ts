// xxHash is loaded on first need. A static config that never hashes starts
// without it; a RING_HASH cluster that arrives later from a file (no xDS
// client, which would load it) still gets it before its ring is built.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashingReady } from '../../src/common/xxhash.js';
import { Server } from '../../src/server/server.js';
import { request, startUpstream, type Upstream } from '../helpers/harness.js';

describe('xxHash for hash-balanced clusters that arrive after start-up', () => {
  let up: Upstream;
  let dir: string;
  let h: Server;
  before(async () => {
    up = await startUpstream('u');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-hash-'));
    fs.writeFileSync(path.join(dir, 'cds.yaml'), 'resources: []\n');
    h = await Server.create({
      configYaml: `
dynamic_resources:
  cds_config: { path_config_source: { path: ${dir}/cds.yaml } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: test
          route_config:
            validate_clusters: false
            virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: ring } }] }]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`,
    });
    await h.start();
  });
  after(async () => {
    await h.stop();
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a RING_HASH cluster from a file is built and serves', async () => {
    assert.equal(hashingReady(), false);
    const tmp = path.join(dir, 'cds.yaml.tmp');
    fs.writeFileSync(
      tmp,
      `resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: ring
  connect_timeout: 1s
  lb_policy: RING_HASH
  load_assignment:
    cluster_name: ring
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up.port} } } } }] }]
`,
    );
    fs.renameSync(tmp, path.join(dir, 'cds.yaml'));
    const deadline = Date.now() + 10000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await request(h.listeners[0]!.boundPort, { path: '/' })).status;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200);
    assert.equal(hashingReady(), true);
  });
});
