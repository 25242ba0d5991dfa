// Shared pieces of the xDS tests: small Envoy resources as proto3 JSON, a
// client that records every update it is given, and polling with a deadline.
import type { JsonObject } from '../../src/config/proto-json.js';
import {
  type ApiType,
  XdsClient,
  type XdsClientOptions,
  type XdsUpdate,
} from '../../src/xds/client/xds-client.js';

export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

/** A listener whose HCM takes its routes from RDS (over ADS). */
export function rdsListener(name: string, routeName: string, port = 0): JsonObject {
  return {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: name,
              rds: { route_config_name: routeName, config_source: { ads: {}, resource_api_version: 'V3' } },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
            },
          },
        ],
      },
    ],
  };
}

export function routeConfig(name: string, cluster: string): JsonObject {
  return {
    name,
    virtual_hosts: [
      {
        name: 'all',
        domains: ['*'],
        routes: [{ match: { prefix: '/' }, route: { cluster, timeout: '2s' } }],
      },
    ],
  };
}

export function edsCluster(name: string, connectTimeout = '0.25s'): JsonObject {
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: connectTimeout,
    lb_policy: 'ROUND_ROBIN',
  };
}

export function loadAssignment(cluster: string, ports: number[]): JsonObject {
  return {
    cluster_name: cluster,
    endpoints: [
      {
        locality: { region: 'local' },
        load_balancing_weight: 1,
        lb_endpoints: ports.map((p) => ({
          endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: p } } },
        })),
      },
    ],
  };
}

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Recorded {
  typeUrl: string;
  update: XdsUpdate;
  verdict: string | undefined;
}

/** An XdsClient whose onUpdate records every update and rejects what `reject` says. */
export class RecordingClient {
  readonly updates: Recorded[] = [];
  readonly timeouts: { typeUrl: string; names: string[] }[] = [];
  readonly client: XdsClient;
  /** Return a message to NACK an update. */
  reject: (typeUrl: string, update: XdsUpdate) => string | undefined = () => undefined;

  constructor(target: string, apiType: ApiType, extra: Partial<XdsClientOptions> = {}, nodeId = 'node-1') {
    this.client = new XdsClient({
      ...(target ? { target } : {}),
      apiType,
      node: { id: nodeId, cluster: 'test', metadata: { team: 'herald', n: 1 }, user_agent_version: '0.1.0' },
      backoff: { baseMs: 50, maxMs: 400 },
      onUpdate: (typeUrl, update) => {
        const verdict = this.reject(typeUrl, update);
        this.updates.push({ typeUrl, update, verdict });
        return verdict;
      },
      onInitialFetchTimeout: (typeUrl, names) => this.timeouts.push({ typeUrl, names }),
      ...extra,
    });
  }

  updatesOf(typeUrl: string): Recorded[] {
    return this.updates.filter((u) => u.typeUrl === typeUrl);
  }

  names(typeUrl: string): string[] {
    return [...this.client.resources(typeUrl).keys()].sort();
  }
}

/** The static cluster an ADS config names (Herald's xDS server, over HTTP/2), as a clusters entry. */
export function xdsClusterYaml(port: number): string {
  return `  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: xds
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } }] }]`;
}
