// Interop: Herald's xDS client against a management server Herald did not
// provide. The server here is a minimal state-of-the-world ADS server built in
// this file from @grpc/grpc-js and @grpc/proto-loader (the service definition)
// and protobufjs (the resources, encoded as google.protobuf.Any), all from the
// Envoy protos that @grpc/grpc-js-xds ships. Nothing of Herald's xDS server or
// codecs is used on that side. Herald takes CDS, EDS, LDS and RDS from it,
// serves traffic, follows an endpoint change, NACKs a cluster it rejects (the
// message names the field) while the last good config keeps serving, and its
// ACKs echo the version_info and nonce it was sent.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { Server } from '../../src/server/server.js';
import { request, startUpstream, stat, type Upstream } from '../helpers/harness.js';
import { waitFor, xdsClusterYaml } from './helpers.js';

const require = createRequire(import.meta.url);
const DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(DEPS, d));

const PREFIX = 'type.googleapis.com/';
const CLUSTER = 'envoy.config.cluster.v3.Cluster';
const ASSIGNMENT = 'envoy.config.endpoint.v3.ClusterLoadAssignment';
const LISTENER = 'envoy.config.listener.v3.Listener';
const ROUTES = 'envoy.config.route.v3.RouteConfiguration';
const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'envoy.extensions.filters.http.router.v3.Router';
const CDS = PREFIX + CLUSTER;
const EDS = PREFIX + ASSIGNMENT;
const LDS = PREFIX + LISTENER;
const RDS = PREFIX + ROUTES;

// ---- resources, encoded with protobufjs from the same proto files ----

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => {
  // google/protobuf/*.proto are bundled with protobufjs.
  if (target in (protobuf.common as unknown as Record<string, unknown>)) return target;
  for (const dir of INCLUDE_DIRS) {
    const p = path.join(dir, target);
    if (fs.existsSync(p)) return p;
  }
  return target;
};
root.loadSync(
  [
    'envoy/config/cluster/v3/cluster.proto',
    'envoy/config/endpoint/v3/endpoint.proto',
    'envoy/config/listener/v3/listener.proto',
    'envoy/config/route/v3/route.proto',
    'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
    'envoy/extensions/filters/http/router/v3/router.proto',
  ],
  { keepCase: true },
);

interface Any {
  type_url: string;
  value: Buffer;
}

function pack(typeName: string, obj: Record<string, unknown>): Any {
  const t = root.lookupType(typeName);
  const msg = t.fromObject(obj);
  const err = t.verify(msg);
  if (err) throw new Error(`${typeName}: ${err}`);
  return { type_url: PREFIX + typeName, value: Buffer.from(t.encode(msg).finish()) };
}

interface Resource {
  name: string;
  any: Any;
}

const adsSource = { ads: {}, resource_api_version: 'V3' };

function cluster(name: string, extra: Record<string, unknown> = {}): Resource {
  return {
    name,
    any: pack(CLUSTER, {
      name,
      type: 'EDS',
      eds_cluster_config: { eds_config: adsSource },
      connect_timeout: { seconds: 0, nanos: 250_000_000 },
      lb_policy: 'ROUND_ROBIN',
      ...extra,
    }),
  };
}

function assignment(name: string, port: number): Resource {
  return {
    name,
    any: pack(ASSIGNMENT, {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } },
          ],
        },
      ],
    }),
  };
}

function listener(name: string, routeName: string): Resource {
  return {
    name,
    any: pack(LISTENER, {
      name,
      address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: pack(HCM, {
                stat_prefix: name,
                rds: { route_config_name: routeName, config_source: adsSource },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: pack(ROUTER, {}) }],
              }),
            },
          ],
        },
      ],
    }),
  };
}

function routes(name: string, clusterName: string): Resource {
  return {
    name,
    any: pack(ROUTES, {
      name,
      virtual_hosts: [
        {
          name: 'all',
          domains: ['*'],
          routes: [{ match: { prefix: '/' }, route: { cluster: clusterName } }],
        },
      ],
    }),
  };
}

// ---- a minimal state-of-the-world ADS server ----

interface DiscoveryRequest {
  version_info: string;
  node: { id: string } | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code: number; message: string } | null;
}

interface DiscoveryResponse {
  version_info: string;
  resources: Any[];
  type_url: string;
  nonce: string;
}

type Stream = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

interface Subscription {
  wildcard: boolean;
  names: Set<string>;
  /** Nonce of the last response sent for this type on this stream. */
  nonce: string;
}

interface Reply {
  typeUrl: string;
  version: string;
  nonce: string;
}

class MiniAds {
  private readonly server = new grpc.Server();
  private readonly resources = new Map<string, Map<string, Any>>();
  private readonly streams = new Map<Stream, Map<string, Subscription>>();
  private version = 0;
  private nonces = 0;
  readonly requests: DiscoveryRequest[] = [];
  readonly sent: Reply[] = [];
  readonly acks: Reply[] = [];
  readonly nacks: (Reply & { message: string })[] = [];

  constructor() {
    const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
      includeDirs: INCLUDE_DIRS,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      envoy: {
        service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } };
      };
    };
    this.server.addService(pkg.envoy.service.discovery.v3.AggregatedDiscoveryService.service, {
      StreamAggregatedResources: (call: Stream) => this.onStream(call),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        call.destroy(Object.assign(new Error('delta not served'), { code: grpc.status.UNIMPLEMENTED })),
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
  }

  close(): void {
    this.server.forceShutdown();
  }

  /** Replaces the resources of one type, bumps the version and pushes to every subscriber. */
  set(typeUrl: string, list: Resource[]): string {
    this.resources.set(typeUrl, new Map(list.map((r) => [r.name, r.any])));
    this.version++;
    for (const [call, subs] of this.streams) if (subs.has(typeUrl)) this.respond(call, subs, typeUrl);
    return String(this.version);
  }

  private onStream(call: Stream): void {
    const subs = new Map<string, Subscription>();
    this.streams.set(call, subs);
    call.on('data', (req: DiscoveryRequest) => this.onRequest(call, subs, req));
    call.on('end', () => {
      this.streams.delete(call);
      call.end();
    });
    call.on('error', () => this.streams.delete(call));
    call.on('cancelled', () => this.streams.delete(call));
  }

  private onRequest(call: Stream, subs: Map<string, Subscription>, req: DiscoveryRequest): void {
    this.requests.push(req);
    const typeUrl = req.type_url;
    const sub = subs.get(typeUrl);
    if (req.response_nonce) {
      // A request answering anything but the latest response is stale: ignored.
      if (!sub || req.response_nonce !== sub.nonce) return;
      const r = { typeUrl, version: req.version_info, nonce: req.response_nonce };
      if (req.error_detail) this.nacks.push({ ...r, message: req.error_detail.message });
      else this.acks.push(r);
    }
    const names = new Set(req.resource_names);
    const wildcard = (typeUrl === CDS || typeUrl === LDS) && (names.size === 0 || names.has('*'));
    names.delete('*');
    const changed =
      !sub ||
      sub.wildcard !== wildcard ||
      sub.names.size !== names.size ||
      [...names].some((n) => !sub.names.has(n));
    subs.set(typeUrl, { wildcard, names, nonce: sub?.nonce ?? '' });
    // A first request (no nonce) or a changed subscription is answered; a plain ACK or NACK is not.
    if (!req.response_nonce || changed) this.respond(call, subs, typeUrl);
  }

  private respond(call: Stream, subs: Map<string, Subscription>, typeUrl: string): void {
    const sub = subs.get(typeUrl)!;
    const all = this.resources.get(typeUrl) ?? new Map<string, Any>();
    const resources = [...all].filter(([name]) => sub.wildcard || sub.names.has(name)).map(([, a]) => a);
    const nonce = `n${++this.nonces}`;
    const version = String(this.version);
    sub.nonce = nonce;
    this.sent.push({ typeUrl, version, nonce });
    call.write({ version_info: version, resources, type_url: typeUrl, nonce });
  }
}

// ---- Herald against it ----

function bootstrap(xdsPort: number): string {
  return `
node: { id: herald-interop, cluster: test }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{ envoy_grpc: { cluster_name: xds } }]
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
${xdsClusterYaml(xdsPort)}
`;
}

describe('Herald against an independent state-of-the-world ADS server', () => {
  let a: Upstream;
  let b: Upstream;
  let ads: MiniAds;
  let h: Server;

  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b');
    ads = new MiniAds();
    const port = await ads.listen();
    ads.set(CDS, [cluster('backend')]);
    ads.set(EDS, [assignment('backend', a.port)]);
    ads.set(LDS, [listener('ingress', 'main-routes')]);
    ads.set(RDS, [routes('main-routes', 'backend')]);
    h = await Server.create({ configYaml: bootstrap(port) });
    await h.start();
  });
  after(async () => {
    await h.stop();
    ads.close();
    await a.close();
    await b.close();
  });

  const served = async () => {
    const r = await request(h.listenerPort('ingress'));
    return r.status === 200 ? String(r.headers['x-upstream']) : `status ${r.status}`;
  };

  it('subscribes over ADS with its node and serves the upstream EDS names', async () => {
    assert.equal(await served(), 'a');
    assert.equal(await stat(h.admin!.boundPort, 'control_plane.connected_state'), 1);
    assert.equal(ads.requests[0]?.node?.id, 'herald-interop');
    const types = new Set(ads.requests.map((r) => r.type_url));
    for (const t of [CDS, EDS, LDS, RDS]) {
      assert.ok(types.has(t), `no request for ${t}`);
      // One initial request per type on the stream, not one per code path that wanted it.
      const initial = ads.requests.filter((r) => r.type_url === t && !r.response_nonce);
      assert.equal(initial.length, 1, `initial requests for ${t}`);
    }
    const eds = ads.requests.filter((r) => r.type_url === EDS);
    assert.deepEqual(eds[eds.length - 1]!.resource_names, ['backend']);
    const rds = ads.requests.filter((r) => r.type_url === RDS);
    assert.deepEqual(rds[rds.length - 1]!.resource_names, ['main-routes']);
  });

  it('a changed ClusterLoadAssignment moves traffic', async () => {
    ads.set(EDS, [assignment('backend', b.port)]);
    await waitFor('traffic on b', async () => (await served()) === 'b');
  });

  it('a cluster Herald rejects is NACKed naming the field; traffic continues', async () => {
    const nacksBefore = ads.nacks.length;
    const accepted = ads.acks.filter((r) => r.typeUrl === CDS).at(-1)!.version;
    const rejected = ads.set(CDS, [cluster('backend'), cluster('broken', { lb_policy: 'CLUSTER_PROVIDED' })]);
    const nack = await waitFor('NACK', () => ads.nacks[nacksBefore]);
    assert.equal(nack.typeUrl, CDS);
    assert.match(nack.message, /lb_policy/);
    // The NACK answers the response that carried the bad cluster, and keeps the version last accepted.
    assert.equal(nack.nonce, ads.sent.filter((s) => s.typeUrl === CDS).at(-1)!.nonce);
    assert.notEqual(nack.version, rejected);
    assert.equal(nack.version, accepted);
    assert.equal(await served(), 'b');
    // A good update after it is taken.
    ads.set(EDS, [assignment('backend', a.port)]);
    await waitFor('traffic back on a', async () => (await served()) === 'a');
  });

  it('ACKs carry the version_info and nonce of the response they answer', async () => {
    assert.ok(ads.acks.length >= 4);
    for (const t of [CDS, EDS, LDS, RDS])
      assert.ok(
        ads.acks.some((r) => r.typeUrl === t),
        `no ACK for ${t}`,
      );
    for (const ack of ads.acks) {
      const reply = ads.sent.find((s) => s.nonce === ack.nonce);
      assert.ok(reply, `ACK of an unknown nonce ${ack.nonce}`);
      assert.deepEqual(ack, reply);
    }
    // Every response sent to Herald was answered (ACK or NACK).
    await waitFor('all answered', () => ads.acks.length + ads.nacks.length === ads.sent.length || undefined);
  });
});
