import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadBootstrap } from '../../src/config/bootstrap-loader.js';
import { ConfigErrors } from '../../src/config/errors.js';
import { validateConfig } from '../../src/server/validate.js';

function tmp(name: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-'));
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

function errorsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors.map((x) => x.message);
    throw e;
  }
  assert.fail('expected a config error');
}

const BASE = `
static_resources:
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }]
`;

describe('bootstrap loading', () => {
  it('reports bad YAML with file, line and column', () => {
    const p = tmp('bad.yaml', 'static_resources:\n  clusters: [\n    - name: x\n');
    const [msg] = errorsOf(() => loadBootstrap({ path: p }));
    assert.match(msg!, /bad\.yaml:\d+:\d+: invalid YAML\/JSON/);
  });

  it('reports a duplicate YAML key', () => {
    const [msg] = errorsOf(() => loadBootstrap({ configYaml: 'admin: {}\nadmin: {}\n' }));
    assert.match(msg!, /--config-yaml:2:1: invalid YAML\/JSON/);
  });

  it('reads JSON as well as YAML', () => {
    const p = tmp(
      'b.json',
      JSON.stringify({ static_resources: { clusters: [{ name: 'j', connect_timeout: '2s' }] } }),
    );
    const b = loadBootstrap({ path: p }) as { static_resources: { clusters: { name: string }[] } };
    assert.equal(b.static_resources.clusters[0]!.name, 'j');
  });

  it('merges --config-yaml over the file with proto MergeFrom semantics', () => {
    const p = tmp('base.yaml', `${BASE}\nnode: { id: from-file, cluster: file-cluster }\n`);
    const overlay = `
node: { id: from-flag }
static_resources:
  clusters:
  - name: b
    connect_timeout: 2s
`;
    // biome-ignore lint/suspicious/noExplicitAny: reading into canonical JSON
    const b = loadBootstrap({ path: p, configYaml: overlay }) as Record<string, any>;
    assert.equal(b.node.id, 'from-flag', 'scalars are replaced');
    assert.equal(b.node.cluster, 'file-cluster', 'messages are merged field by field');
    assert.deepEqual(
      b.static_resources.clusters.map((c: { name: string }) => c.name),
      ['a', 'b'],
      'repeated fields are appended',
    );
  });

  it('checks required fields on the merged result, not on each part', () => {
    const p = tmp('base.yaml', BASE);
    // The overlay alone lacks nothing it needs; the merge still validates.
    const errs = errorsOf(() =>
      loadBootstrap({ path: p, configYaml: 'static_resources: { clusters: [{ connect_timeout: 1s }] }' }),
    );
    assert.ok(
      errs.some((e) => /static_resources\.clusters\[1\]\.name: required field is missing/.test(e)),
      errs.join('\n'),
    );
  });

  it('tells an xDS resource file from a bootstrap', () => {
    const [msg] = errorsOf(() => loadBootstrap({ configYaml: 'resources: []' }));
    assert.match(msg!, /DiscoveryResponse file, not a bootstrap/);
  });
});

describe('compiling: a config Herald accepts is one it honours', () => {
  const hcm = (extra: string) => `
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
${extra}
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
${BASE.replace('static_resources:\n', '')}`;

  it('accepts a config it implements', () => {
    const cfg = validateConfig({ configYaml: hcm('') });
    assert.equal(cfg.listeners.length, 1);
    assert.equal(cfg.clusters[0]!.connectTimeoutMs, 1000);
  });

  it('rejects a valid Envoy field Herald does not implement, by path', () => {
    const errs = errorsOf(() => validateConfig({ configYaml: hcm('          tracing: {}') }));
    assert.equal(
      errs[0],
      'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.tracing: is not supported by Herald (it would be ignored, so it is rejected)',
    );
  });

  it('rejects an extension Herald does not implement, naming it', () => {
    const yaml = hcm('').replace(
      '          - name: envoy.filters.http.router',
      '          - name: envoy.filters.http.cors\n            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }\n          - name: envoy.filters.http.router',
    );
    const errs = errorsOf(() => validateConfig({ configYaml: yaml }));
    assert.match(
      errs[0]!,
      /^static_resources\.listeners\[0\]\.filter_chains\[0\]\.filters\[0\]\.typed_config\.http_filters\[0\]\.typed_config: HTTP filter 'envoy\.filters\.http\.cors' \(type\.googleapis\.com\/envoy\.extensions\.filters\.http\.cors\.v3\.Cors\) is not supported by Herald/,
    );
  });

  it('rejects a route to an unknown cluster (validate_clusters)', () => {
    const errs = errorsOf(() =>
      validateConfig({ configYaml: hcm('').replace('route: { cluster: a }', 'route: { cluster: nope }') }),
    );
    assert.match(errs[0]!, /virtual_hosts\[0\]\.routes\[0\]\.route\.cluster: route: unknown cluster 'nope'/);
  });

  it('typed_per_filter_config: a filter Herald lacks is an error, unless marked optional', () => {
    const perFilter = (v: string) =>
      hcm('').replace(
        'routes: [{ match: { prefix: / }, route: { cluster: a } }]',
        `routes: [{ match: { prefix: / }, route: { cluster: a }, typed_per_filter_config: { envoy.filters.http.buffer: ${v} } }]`,
      );
    const errs = errorsOf(() =>
      validateConfig({
        configYaml: perFilter(
          '{ "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, disabled: true }',
        ),
      }),
    );
    assert.match(
      errs[0]!,
      /routes\[0\]\.typed_per_filter_config\["envoy\.filters\.http\.buffer"\]: no HTTP filter in Herald takes per-route config of type type\.googleapis\.com\/envoy\.extensions\.filters\.http\.buffer\.v3\.BufferPerRoute/,
    );
    validateConfig({
      configYaml: perFilter(
        '{ "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true, config: { "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute, disabled: true } }',
      ),
    });
  });

  it('the terminal router cannot be disabled', () => {
    const errs = errorsOf(() =>
      validateConfig({
        configYaml: hcm('').replace(
          '- name: envoy.filters.http.router',
          '- name: envoy.filters.http.router\n            disabled: true',
        ),
      }),
    );
    assert.match(errs[0]!, /http_filters\[0\]\.disabled: the terminal filter cannot be disabled/);
  });
});
