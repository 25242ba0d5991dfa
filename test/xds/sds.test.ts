// SDS: a listener's certificate named by `tls_certificate_sds_secret_configs`
// arrives over ADS, and a new version rotates it (new connections present the
// new certificate); static_resources.secrets serve the same way.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import https from 'node:https';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { Server } from '../../src/server/server.js';
import { LISTENER_TYPE, SECRET_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { selfSignedCert } from '../helpers/data-path.js';
import { request } from '../helpers/harness.js';
import { xdsClusterYaml } from './helpers.js';

const A = selfSignedCert();
const B = selfSignedCert();

/** The certificate a TLS handshake presents (its SHA-256 fingerprint), or the error. */
function presented(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect(
      { host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' },
      () => {
        resolve(s.getPeerX509Certificate()?.fingerprint256 ?? 'none');
        s.destroy();
      },
    );
    s.on('error', (e) => resolve(`error: ${e.message}`));
  });
}

const fingerprint = (pem: string) => new crypto.X509Certificate(pem).fingerprint256;

function listener(tlsContext: string): string {
  return `
  listeners:
  - name: tls
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
${tlsContext}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]`;
}

function secret(name: string, c: { cert: string; key: string }) {
  return {
    name,
    tls_certificate: { certificate_chain: { inline_string: c.cert }, private_key: { inline_string: c.key } },
  };
}

describe('SDS over ADS', { skip: !A || !B }, () => {
  let cache: SnapshotCache;
  let xds: XdsServer;
  let h: Server;
  let version = 0;
  const push = (c: { cert: string; key: string }) =>
    cache.setSnapshot('sds-test', {
      version: String(++version),
      resources: { [SECRET_TYPE]: [secret('server_cert', c)] },
    });
  before(async () => {
    cache = new SnapshotCache();
    xds = new XdsServer(cache, { controlPlaneId: 'test' });
    const port = await xds.listen('127.0.0.1:0');
    push(A!);
    h = await Server.create({
      configYaml: `
node: { id: sds-test, cluster: test }
dynamic_resources:
  ads_config: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] }
static_resources:
${listener(`            tls_certificate_sds_secret_configs: [{ name: server_cert, sds_config: { ads: {}, resource_api_version: V3 } }]`)}
  clusters:
${xdsClusterYaml(port)}
`,
    });
    await h.start();
  });
  after(async () => {
    await h.stop();
    await xds.close();
  });

  it('presents the certificate SDS delivered, and the new one after a rotation', async () => {
    const port = h.listenerPort('tls');
    const deadline = Date.now() + 5000;
    let got = await presented(port);
    while (got !== fingerprint(A!.cert) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      got = await presented(port);
    }
    assert.equal(got, fingerprint(A!.cert));
    push(B!);
    const until = Date.now() + 5000;
    while (got !== fingerprint(B!.cert) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
      got = await presented(port);
    }
    assert.equal(got, fingerprint(B!.cert), 'rotated');
  });
});

describe('static_resources.secrets', { skip: !A }, () => {
  let h: Server;
  before(async () => {
    h = await Server.create({
      configYaml: `
static_resources:
  secrets:
  - name: server_cert
    tls_certificate:
      certificate_chain: { inline_string: ${JSON.stringify(A!.cert)} }
      private_key: { inline_string: ${JSON.stringify(A!.key)} }
${listener(`            tls_certificate_sds_secret_configs: [{ name: server_cert }]`)}
`,
    });
    await h.start();
  });
  after(async () => {
    await h.stop();
  });

  it('a TLS context names a static secret', async () => {
    assert.equal(await presented(h.listenerPort('tls')), fingerprint(A!.cert));
  });
});

describe('SDS for upstream TLS', { skip: !A }, () => {
  let cache: SnapshotCache;
  let xds: XdsServer;
  let up: https.Server;
  let h: Server;
  before(async () => {
    up = https.createServer({ cert: A!.cert, key: A!.key }, (_q, r) => r.end('over tls'));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const upPort = (up.address() as net.AddressInfo).port;
    cache = new SnapshotCache();
    xds = new XdsServer(cache, { controlPlaneId: 'test' });
    const port = await xds.listen('127.0.0.1:0');
    cache.setSnapshot('sds-up', { version: '1', resources: { [SECRET_TYPE]: [] } });
    h = await Server.create({
      configYaml: `
node: { id: sds-up, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
  ads_config: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] }
static_resources:
  listeners:
  - name: plain
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: secure } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: secure
    type: STATIC
    connect_timeout: 1s
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context_sds_secret_config: { name: upstream_ca, sds_config: { ads: {}, resource_api_version: V3 } }
    load_assignment:
      cluster_name: secure
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upPort} } } } }] }]
${xdsClusterYaml(port)}
`,
    });
    await h.start();
  });
  after(async () => {
    await h.stop();
    await xds.close();
    up.close();
  });

  it('the upstream is trusted once SDS delivers its CA', async () => {
    const port = h.listenerPort('plain');
    assert.equal((await request(port, { path: '/' })).status, 503, 'no CA yet: the connection fails');
    cache.setSnapshot('sds-up', {
      version: '2',
      resources: {
        [SECRET_TYPE]: [
          { name: 'upstream_ca', validation_context: { trusted_ca: { inline_string: A!.cert } } },
        ],
      },
    });
    const deadline = Date.now() + 5000;
    let r = await request(port, { path: '/' });
    while (r.status !== 200 && Date.now() < deadline) {
      await new Promise((x) => setTimeout(x, 50));
      r = await request(port, { path: '/' });
    }
    assert.equal(r.status, 200);
    assert.equal(r.body, 'over tls');
  });
});

describe('an LDS listener warms until its SDS secret arrives', { skip: !A }, () => {
  let cache: SnapshotCache;
  let xds: XdsServer;
  let h: Server;
  let port: number;
  const lds = (withSecret: boolean, version: string) =>
    cache.setSnapshot('warm', {
      version,
      resources: {
        [LISTENER_TYPE]: [
          {
            name: 'tls-lds',
            address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
            filter_chains: [
              {
                transport_socket: {
                  name: 'envoy.transport_sockets.tls',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
                    common_tls_context: {
                      tls_certificate_sds_secret_configs: [{ name: 'lds_cert', sds_config: { ads: {} } }],
                    },
                  },
                },
                filters: [
                  {
                    name: 'envoy.filters.network.tcp_proxy',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                      stat_prefix: 't',
                      cluster: 'xds',
                    },
                  },
                ],
              },
            ],
          },
        ],
        [SECRET_TYPE]: withSecret ? [secret('lds_cert', A!)] : [],
      },
    });
  before(async () => {
    cache = new SnapshotCache();
    xds = new XdsServer(cache, { controlPlaneId: 'test' });
    port = await xds.listen('127.0.0.1:0');
    lds(false, '1');
  });
  after(async () => {
    await h?.stop();
    await xds.close();
  });

  it('Herald goes live, and the listener binds, only once the certificate is there', async () => {
    h = await Server.create({
      configYaml: `
node: { id: warm, cluster: test }
dynamic_resources:
  ads_config: { api_type: GRPC, transport_api_version: V3, grpc_services: [{ envoy_grpc: { cluster_name: xds } }] }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
${xdsClusterYaml(port)}
`,
    });
    let live = false;
    const started = h.start().then(() => {
      live = true;
    });
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(live, false, 'still warming');
    assert.throws(() => h.listenerPort('tls-lds'));
    lds(true, '2');
    await started;
    assert.equal(await presented(h.listenerPort('tls-lds')), fingerprint(A!.cert));
  });
});
