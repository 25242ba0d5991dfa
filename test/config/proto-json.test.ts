import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { envoyProtos } from '../../src/config/envoy-protos.js';
import { walkMessage } from '../../src/config/proto-json.js';

const protos = envoyProtos();
const walk = (type: string, v: unknown, checkRequired = true) =>
  walkMessage(protos, type, v, { checkRequired });
const CLUSTER = 'envoy.config.cluster.v3.Cluster';

describe('proto3 JSON walker over the Envoy protos', () => {
  it('accepts snake_case and camelCase spellings and returns the same canonical value', () => {
    const a = walk(CLUSTER, {
      name: 'c',
      connect_timeout: '0.25s',
      lb_policy: 'LEAST_REQUEST',
      per_connection_buffer_limit_bytes: 1024,
    });
    const b = walk(CLUSTER, {
      name: 'c',
      connectTimeout: '0.25s',
      lbPolicy: 'LEAST_REQUEST',
      perConnectionBufferLimitBytes: 1024,
    });
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
    assert.deepEqual(a.value, b.value);
    assert.equal(a.value?.connect_timeout, '0.250s'.replace(/0+s$/, 's'));
  });

  it('rejects an unknown field, naming its path and the message type', () => {
    const r = walk(CLUSTER, {
      name: 'c',
      load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { adress: {} } }] }] },
    });
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.path, 'load_assignment.endpoints[0].lb_endpoints[0].endpoint.adress');
    assert.match(r.errors[0]!.message, /unknown field 'adress' in envoy\.config\.endpoint\.v3\.Endpoint/);
  });

  it('rejects wrong types with the expected and actual type', () => {
    const r = walk(CLUSTER, {
      name: 'c',
      connect_timeout: 5,
      lb_policy: 7.5,
      per_connection_buffer_limit_bytes: 'lots',
    });
    const byPath = Object.fromEntries(r.errors.map((e) => [e.path, e.detail]));
    assert.match(byPath.connect_timeout!, /expected a duration such as "1.5s", got number 5/);
    assert.match(byPath.lb_policy!, /not a value of enum LbPolicy/);
    assert.match(
      byPath.per_connection_buffer_limit_bytes!,
      /expected a bare uint32 value|expected an integer/,
    );
  });

  it('enforces validate.rules: required fields and ranges', () => {
    const missing = walk(CLUSTER, { connect_timeout: '1s' });
    assert.ok(
      missing.errors.some((e) => e.path === 'name' && /required/.test(e.detail)),
      JSON.stringify(missing.errors),
    );
    const range = walk(CLUSTER, { name: 'c', dns_refresh_rate: '0.0005s' });
    assert.ok(
      range.errors.some((e) => e.path === 'dns_refresh_rate' && /greater than 0.001s/.test(e.detail)),
      JSON.stringify(range.errors),
    );
    const neg = walk('envoy.config.core.v3.SocketAddress', { address: '1.2.3.4', port_value: 70000 });
    assert.ok(
      neg.errors.some((e) => e.path === 'port_value' && /at most 65535|out of range/.test(e.detail)),
      JSON.stringify(neg.errors),
    );
  });

  it('does not check required fields on a partial overlay', () => {
    assert.deepEqual(walk(CLUSTER, { connect_timeout: '1s' }, false).errors, []);
  });

  it('resolves typed_config by @type and rejects an unknown @type', () => {
    const ok = walk('envoy.config.listener.v3.Filter', {
      name: 'x',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
        stat_prefix: 's',
        cluster: 'c',
      },
    });
    assert.deepEqual(ok.errors, []);
    const bad = walk('envoy.config.listener.v3.Filter', {
      name: 'x',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxi',
        stat_prefix: 's',
      },
    });
    assert.equal(bad.errors[0]?.path, 'typed_config');
    assert.match(bad.errors[0]!.detail, /unknown @type/);
    const inner = walk('envoy.config.listener.v3.Filter', {
      name: 'x',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
        stat_prefix: 's',
        clustre: 'c',
      },
    });
    assert.equal(inner.errors[0]?.path, 'typed_config.clustre');
  });

  it('unpacks a TypedStruct into the type it names', () => {
    const r = walk('envoy.config.listener.v3.Filter', {
      name: 'x',
      typed_config: {
        '@type': 'type.googleapis.com/xds.type.v3.TypedStruct',
        type_url: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
        value: { stat_prefix: 's', cluster: 'c' },
      },
    });
    assert.deepEqual(r.errors, []);
    assert.equal(
      (r.value!.typed_config as Record<string, unknown>)['@type'],
      'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
    );
  });

  it('rejects two members of one oneof', () => {
    const r = walk('envoy.config.route.v3.RouteMatch', { prefix: '/', path: '/x' });
    assert.match(r.errors[0]!.detail, /only one of 'prefix' and 'path'/);
  });

  it('parses enums case-insensitively, as Envoy does', () => {
    const r = walk(CLUSTER, { name: 'c', type: 'strict_dns' });
    assert.deepEqual(r.errors, []);
    assert.equal(r.value?.type, 'STRICT_DNS');
  });

  it('maps wrappers, Struct and Duration objects', () => {
    const r = walk('envoy.config.route.v3.RouteAction', {
      cluster: 'c',
      timeout: { seconds: 2, nanos: 500000000 },
      max_grpc_timeout: '3s',
      retry_policy: { num_retries: 3 },
    });
    assert.deepEqual(r.errors, []);
    assert.equal(r.value?.timeout, '2.5s');
    assert.equal((r.value!.retry_policy as Record<string, unknown>).num_retries, 3);
    const w = walk('envoy.config.route.v3.RetryPolicy', { num_retries: { value: 3 } });
    assert.match(w.errors[0]!.detail, /expected a bare/);
  });

  it('is a fixed point: walking canonical output again gives it back', () => {
    const first = walk(CLUSTER, {
      name: 'c',
      connectTimeout: { seconds: 1 },
      type: 'logical_dns',
      dns_refresh_rate: '0.5s',
    });
    const second = walk(CLUSTER, first.value);
    assert.deepEqual(second.value, first.value);
  });
});
