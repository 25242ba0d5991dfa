// The embedded demo: two small upstream services (v1 and v2) on loopback and
// a front listener splitting traffic 90/10 between them, as an Envoy user
// would write it. `herald` with no -c runs this.
import http from 'node:http';
import type net from 'node:net';

export interface DemoOptions {
  listenerPort: number;
  adminPort: number;
}

export interface DemoUpstreams {
  ports: { v1: number; v2: number };
  close(): Promise<void>;
}

/** Starts the demo services on 127.0.0.1 (ephemeral ports). */
export async function startDemoUpstreams(): Promise<DemoUpstreams> {
  const make = (version: string) =>
    http.createServer((req, res) => {
      const body = `${JSON.stringify({
        service: 'demo',
        version,
        method: req.method,
        path: req.url,
        host: req.headers.host,
        request_id: req.headers['x-request-id'],
        forwarded_proto: req.headers['x-forwarded-proto'],
      })}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'x-demo-version': version });
      res.end(body);
    });
  const v1 = make('v1');
  const v2 = make('v2');
  const listen = (s: http.Server) =>
    new Promise<number>((resolve) =>
      s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)),
    );
  const ports = { v1: await listen(v1), v2: await listen(v2) };
  return {
    ports,
    close: async () => {
      v1.closeAllConnections();
      v2.closeAllConnections();
      await Promise.all([new Promise((r) => v1.close(r)), new Promise((r) => v2.close(r))]);
    },
  };
}

/** The demo bootstrap, in Envoy's own YAML. */
export function demoConfigYaml(o: DemoOptions, upstream: { v1: number; v2: number }): string {
  const cluster = (name: string, port: number) => `
  - name: ${name}
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: ${port} }`;
  return `# Herald's embedded demo: 90% of requests to v1, 10% to v2.
node: { id: herald-demo, cluster: demo }
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: ${o.adminPort} }
static_resources:
  listeners:
  - name: front
    address:
      socket_address: { address: 127.0.0.1, port_value: ${o.listenerPort} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: demo_route
            virtual_hosts:
            - name: demo
              domains: ["*"]
              routes:
              - match: { prefix: "/v1" }
                route: { cluster: demo_v1 }
              - match: { prefix: "/v2" }
                route: { cluster: demo_v2 }
              - match: { prefix: "/" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: demo_v1, weight: 90 }
                    - { name: demo_v2, weight: 10 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:${cluster('demo_v1', upstream.v1)}${cluster('demo_v2', upstream.v2)}
`;
}
