// Herald's management server spoken to message by message with a plain
// grpc-js stream, for the protocol rules a well-behaved client never
// exercises: stale nonces, malformed requests, wildcard transitions; and
// Herald's client facing bytes that do not decode.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  type DiscoveryRequest,
  type DiscoveryResponse,
  discoveryCodec,
  findMethod,
} from '../../src/xds/protocol.js';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../src/xds/resources.js';
import { XdsServer } from '../../src/xds/server/server.js';
import { SnapshotCache } from '../../src/xds/server/snapshot-cache.js';
import { edsCluster, RecordingClient, rdsListener, waitFor } from './helpers.js';

class RawAdsStream {
  readonly responses: DiscoveryResponse[] = [];
  status: grpc.StatusObject | undefined;
  private readonly call: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;

  constructor(client: grpc.Client) {
    const c = discoveryCodec();
    this.call = client.makeBidiStreamRequest(
      findMethod('sotw', undefined).path,
      c.encodeRequest,
      c.decodeResponse,
      new grpc.Metadata(),
    );
    this.call.on('data', (r: DiscoveryResponse) => this.responses.push(r));
    this.call.on('error', () => {});
    this.call.on('status', (s) => (this.status = s));
  }

  send(r: Partial<DiscoveryRequest>): void {
    this.call.write({ version_info: '', resource_names: [], type_url: '', response_nonce: '', ...r });
  }

  async next(count: number): Promise<DiscoveryResponse> {
    await waitFor(`response #${count}`, () => this.responses.length >= count);
    return this.responses[count - 1]!;
  }

  end(): void {
    this.call.cancel();
  }
}

describe('management server protocol rules', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer(cache);
  let client: grpc.Client;
  let port: number;

  before(async () => {
    port = await server.listen();
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await server.close();
  });

  const listeners = (version: string, names: string[]) => ({
    version,
    resources: { [LISTENER_TYPE]: names.map((n) => rdsListener(n, 'r')) },
  });

  it('ignores a request whose nonce is stale and takes the latest nonce as the ACK', async () => {
    cache.setSnapshot('stale', listeners('1', ['a']));
    const s = new RawAdsStream(client);
    s.send({ node: { id: 'stale' }, type_url: LISTENER_TYPE });
    const r1 = await s.next(1);
    assert.equal(r1.version_info, '1');
    cache.setSnapshot('stale', listeners('2', ['a', 'b']));
    const r2 = await s.next(2);
    assert.equal(r2.version_info, '2');
    assert.equal(r2.resources.length, 2);
    const stale: string[] = [];
    server.on('staleRequest', (e) => stale.push(e.request.response_nonce as string));
    s.send({ version_info: '1', type_url: LISTENER_TYPE, response_nonce: r1.nonce });
    s.send({ version_info: '2', type_url: LISTENER_TYPE, response_nonce: r2.nonce });
    await waitFor('ACK of 2', () => server.acks.find((a) => a.nodeId === 'stale'));
    assert.deepEqual(stale, [r1.nonce]);
    assert.deepEqual(
      server.acks.filter((a) => a.nodeId === 'stale').map((a) => [a.versionInfo, a.nonce]),
      [['2', r2.nonce]],
    );
    assert.equal(r2.control_plane, undefined);
    s.end();
  });

  it('narrows a legacy wildcard when names are given, and an empty list then unsubscribes', async () => {
    cache.setSnapshot('wild', listeners('1', ['a', 'b']));
    const s = new RawAdsStream(client);
    s.send({ node: { id: 'wild' }, type_url: LISTENER_TYPE });
    const r1 = await s.next(1);
    assert.equal(r1.resources.length, 2);
    s.send({ version_info: '1', type_url: LISTENER_TYPE, response_nonce: r1.nonce, resource_names: ['b'] });
    const r2 = await s.next(2);
    assert.equal(r2.resources.length, 1);
    s.send({ version_info: '1', type_url: LISTENER_TYPE, response_nonce: r2.nonce, resource_names: [] });
    const r3 = await s.next(3);
    assert.equal(r3.resources.length, 0);
    // "*" subscribes to everything again.
    s.send({ version_info: '1', type_url: LISTENER_TYPE, response_nonce: r3.nonce, resource_names: ['*'] });
    const r4 = await s.next(4);
    assert.equal(r4.resources.length, 2);
    s.end();
  });

  it('does not answer a resumed stream whose version is current', async () => {
    // The snapshot speaks for LDS only: the CDS request gets no answer.
    cache.setSnapshot('resume', { ...listeners('7', ['a']), version: { [LISTENER_TYPE]: '7' } });
    const s = new RawAdsStream(client);
    const seen: string[] = [];
    server.on('request', (e) => {
      if (e.nodeId === 'resume') seen.push(e.typeUrl);
    });
    s.send({ node: { id: 'resume' }, type_url: LISTENER_TYPE, version_info: '7' });
    s.send({ type_url: CLUSTER_TYPE, version_info: '' });
    await waitFor('both requests', () => seen.length === 2);
    cache.setSnapshot('resume', { ...listeners('8', ['a']), version: { [LISTENER_TYPE]: '8' } });
    const r = await s.next(1);
    assert.equal(r.type_url, LISTENER_TYPE, 'the first response is the change, not a resend of version 7');
    assert.equal(r.version_info, '8');
    s.end();
  });

  it('ends an ADS stream whose request has no type_url with INVALID_ARGUMENT', async () => {
    const s = new RawAdsStream(client);
    s.send({ node: { id: 'bad' } });
    await waitFor('status', () => s.status);
    assert.equal(s.status!.code, grpc.status.INVALID_ARGUMENT);
    assert.match(s.status!.details, /type_url/);
  });

  it('Herald’s client NACKs a resource whose bytes do not decode, without calling onUpdate', async () => {
    cache.setSnapshot('garbage', {
      version: 'g1',
      resources: {
        [CLUSTER_TYPE]: [
          edsCluster('fine'),
          {
            name: 'broken',
            version: 'x',
            any: { type_url: CLUSTER_TYPE, value: Uint8Array.from([0x0a, 0x01, 0x61, 0x0f]) },
          },
        ],
      },
    });
    const c = new RecordingClient(`127.0.0.1:${port}`, 'GRPC', {}, 'garbage');
    try {
      c.client.subscribe(CLUSTER_TYPE);
      await c.client.start();
      const nack = await waitFor('NACK', () => server.nacks.find((n) => n.nodeId === 'garbage'));
      assert.match(nack.errorDetail.message, /cannot decode envoy\.config\.cluster\.v3\.Cluster/);
      assert.equal(nack.versionInfo, '');
      assert.equal(c.updates.length, 0);
      assert.equal(c.client.stats.cds.update_rejected, 1);
      assert.equal(c.client.stats.cds.update_success, 0);
    } finally {
      c.client.close();
    }
  });
});
