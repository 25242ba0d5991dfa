// A bootstrap with one STATIC cluster of `n` endpoints (10.x.y.z addresses, which no test
// connects to), plus an optional second cluster the listener routes to. For the tests that
// load, validate and dump very large configs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function bigBootstrapYaml(n: number, o: { adminPort?: number; upstreamPort?: number } = {}): string {
  const route = o.upstreamPort === undefined ? 'big' : 'small';
  const out = [
    `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${o.adminPort ?? 0} } }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: big
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                route: { cluster: ${route} }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:`,
  ];
  if (o.upstreamPort !== undefined)
    out.push(`  - name: small
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: small
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${o.upstreamPort} } } }`);
  out.push(`  - name: big
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: big
      endpoints:
      - lb_endpoints:`);
  for (let i = 0; i < n; i++)
    out.push(
      `        - endpoint: { address: { socket_address: { address: 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}, port_value: ${1000 + (i % 50000)} } } }`,
    );
  return `${out.join('\n')}\n`;
}

/** Writes the YAML to a fresh temporary folder; returns the file's path. */
export function writeBigBootstrap(n: number, o: { adminPort?: number; upstreamPort?: number } = {}): string {
  const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-big-')), `big-${n}.yaml`);
  fs.writeFileSync(p, bigBootstrapYaml(n, o));
  return p;
}
