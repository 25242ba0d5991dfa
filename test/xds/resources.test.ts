// xDS resources: proto3 JSON -> Any bytes -> proto3 JSON, through the Envoy
// protos, for the well-known types the JSON mapping treats specially; the
// decoded JSON is what Herald's config walker accepts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { envoyProtos } from '../../src/config/envoy-protos.js';
import { walkMessage } from '../../src/config/proto-json.js';
import {
  CLUSTER_TYPE,
  decodeResource,
  ENDPOINT_TYPE,
  encodeResource,
  LISTENER_TYPE,
  SECRET_TYPE,
} from '../../src/xds/resources.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { edsCluster, HCM_TYPE, loadAssignment, ROUTER_TYPE, rdsListener } from './helpers.js';

describe('xDS resources', () => {
  it('round-trips a listener with nested Any, Duration, wrappers, Struct, enums and int64', () => {
    const listener = {
      '@type': LISTENER_TYPE,
      name: 'front',
      address: { socket_address: { address: '::1', port_value: 8443, protocol: 'TCP' } },
      per_connection_buffer_limit_bytes: 32768,
      listener_filters_timeout: '0.5s',
      metadata: {
        filter_metadata: { herald: { team: 'edge', replicas: 3, canary: false, tags: ['a', null] } },
      },
      filter_chains: [
        {
          filter_chain_match: { server_names: ['a.example'], destination_port: 8443 },
          filters: [
            {
              name: 'hcm',
              typed_config: {
                '@type': HCM_TYPE,
                stat_prefix: 'front',
                codec_type: 'AUTO',
                stream_idle_timeout: '300s',
                max_request_headers_kb: 96,
                route_config: {
                  name: 'local',
                  virtual_hosts: [
                    {
                      name: 'vh',
                      domains: ['*'],
                      routes: [
                        {
                          match: { prefix: '/' },
                          route: {
                            weighted_clusters: {
                              clusters: [
                                { name: 'a', weight: 90 },
                                { name: 'b', weight: 10 },
                              ],
                            },
                            timeout: '1.250s',
                          },
                        },
                      ],
                    },
                  ],
                },
                http_filters: [{ name: 'router', typed_config: { '@type': ROUTER_TYPE } }],
              },
            },
          ],
        },
      ],
    };
    const enc = encodeResource(LISTENER_TYPE, listener);
    assert.equal(enc.name, 'front');
    assert.equal(enc.any.type_url, LISTENER_TYPE);
    const dec = decodeResource(LISTENER_TYPE, enc.any);
    assert.equal(dec.version, enc.version);
    // Canonical JSON: durations normalised, everything else as given.
    const expected = JSON.parse(JSON.stringify(listener).replace('"1.250s"', '"1.25s"'));
    assert.deepEqual(dec.json, expected);
    // Equal JSON encodes to equal bytes and so to an equal version.
    assert.equal(encodeResource(LISTENER_TYPE, dec.json).version, enc.version);
    // Herald's own config walker takes the decoded JSON as it takes a bootstrap's.
    const { '@type': _t, ...body } = dec.json;
    const walked = walkMessage(envoyProtos(), 'envoy.config.listener.v3.Listener', body, {
      checkRequired: true,
    });
    assert.deepEqual(walked.errors, []);
    assert.deepEqual(walked.value, body);
  });

  it('encodes bytes as base64 and names a ClusterLoadAssignment by cluster_name', () => {
    const secret = {
      name: 'cert',
      tls_certificate: { certificate_chain: { inline_bytes: Buffer.from('chain').toString('base64') } },
    };
    const dec = decodeResource(SECRET_TYPE, encodeResource(SECRET_TYPE, secret).any);
    assert.deepEqual(dec.json, { '@type': SECRET_TYPE, ...secret });
    const cla = decodeResource(ENDPOINT_TYPE, encodeResource(ENDPOINT_TYPE, loadAssignment('svc', [80])).any);
    assert.equal(cla.name, 'svc');
  });

  it('rejects resources that are not valid Envoy config, naming the field', () => {
    assert.throws(
      () => encodeResource(CLUSTER_TYPE, { ...edsCluster('c'), connect_timeout: 'soon' }),
      /connect_timeout: expected a duration/,
    );
    assert.throws(
      () => encodeResource(CLUSTER_TYPE, { ...edsCluster('c'), colour: 'blue' }),
      /unknown field 'colour'/,
    );
    assert.throws(() => encodeResource(CLUSTER_TYPE, { '@type': LISTENER_TYPE, name: 'x' }), /is not/);
    const cache = new SnapshotCache();
    assert.throws(
      () =>
        cache.setSnapshot('n', {
          version: '1',
          resources: {
            [LISTENER_TYPE]: [rdsListener('ok', 'r'), { name: 'bad', address: { pipe: { path: 5 } } }],
          },
        }),
      /Listener resource \[1\]: address\.pipe\.path: expected a string/,
    );
    assert.equal(cache.getSnapshot('n'), undefined, 'an invalid snapshot is not installed');
  });

  it('refuses to decode a resource of another type or with bytes that do not parse', () => {
    const cluster = encodeResource(CLUSTER_TYPE, edsCluster('c'));
    assert.throws(() => decodeResource(LISTENER_TYPE, cluster.any), /in a response for/);
    const Cluster = envoyProtos().lookupType('envoy.config.cluster.v3.Cluster')!;
    assert.ok(Cluster instanceof protobuf.Type);
    assert.throws(
      () =>
        decodeResource(CLUSTER_TYPE, { type_url: CLUSTER_TYPE, value: Uint8Array.from([0x0a, 0x50, 0x01]) }),
      /cannot decode envoy\.config\.cluster\.v3\.Cluster/,
    );
  });
});
