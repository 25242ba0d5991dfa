// Admin endpoints that inspect or change the server: /memory, /reset_counters,
// /drain_listeners, /config_dump parameters and /clusters details, over real
// sockets after real traffic.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

/** Whether something accepts TCP connections on the port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('admin endpoints', () => {
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('backend');
    h = await startHerald(
      httpBootstrap({
        routes: '- match: { prefix: / }\n  route: { cluster: backend }',
        clusters: staticCluster('backend', [up.port]),
        listenerExtra: '    traffic_direction: OUTBOUND',
      }),
    );
    for (let i = 0; i < 2; i++) await request(h.port());
  });
  after(async () => {
    await h.stop();
    await up.close();
  });
  const admin = (path: string, method = 'GET') => request(h.adminPort, { path, method });

  it("server, listener_manager and cluster_manager stats with Envoy's names", async () => {
    const want: Record<string, number> = {
      'server.live': 1,
      'server.state': 0,
      'server.concurrency': 1,
      'listener_manager.listener_added': 1,
      'listener_manager.total_listeners_active': 1,
      'cluster_manager.cluster_added': 1,
      'cluster_manager.active_clusters': 1,
    };
    for (const [name, v] of Object.entries(want)) assert.equal(await stat(h.adminPort, name), v, name);
    const [maj, min, pat] = JSON.parse(
      (await import('node:fs')).readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
    ).version.split('.');
    assert.equal(
      await stat(h.adminPort, 'server.version'),
      Number(maj) * 10000 + Number(min) * 100 + Number(pat),
    );
    assert.ok(((await stat(h.adminPort, 'server.memory_allocated')) ?? 0) > 0);
    assert.ok(((await stat(h.adminPort, 'server.memory_heap_size')) ?? 0) > 0);
    assert.ok(((await stat(h.adminPort, 'server.uptime')) ?? -1) >= 0);
  });

  it("/memory: Envoy's Memory fields as decimal strings", async () => {
    const r = await admin('/memory');
    assert.equal(r.status, 200);
    const m = JSON.parse(r.body) as Record<string, string>;
    assert.deepEqual(Object.keys(m), [
      'allocated',
      'heap_size',
      'pageheap_unmapped',
      'pageheap_free',
      'total_thread_cache',
      'total_physical_bytes',
    ]);
    for (const v of Object.values(m)) assert.match(v, /^\d+$/);
    assert.ok(Number(m.allocated) > 0 && Number(m.total_physical_bytes) > 0);
  });

  it('POST /reset_counters zeroes counters and leaves gauges', async () => {
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_total'), 2);
    assert.equal((await admin('/reset_counters')).status, 405);
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_total'), 2);
    const r = await admin('/reset_counters', 'POST');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'OK\n');
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_total'), 0);
    assert.equal(await stat(h.adminPort, 'cluster.backend.membership_total'), 1);
    await request(h.port());
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_total'), 1);
  });

  it("/clusters: circuit-breaker defaults per priority and Envoy's per-host lines", async () => {
    const text = (await admin('/clusters')).body;
    for (const line of [
      'backend::observability_name::backend',
      'backend::default_priority::max_connections::1024',
      'backend::default_priority::max_pending_requests::1024',
      'backend::default_priority::max_requests::1024',
      'backend::default_priority::max_retries::3',
      'backend::high_priority::max_connections::1024',
      'backend::high_priority::max_retries::3',
      'backend::added_via_api::false',
      `backend::127.0.0.1:${up.port}::health_flags::healthy`,
      `backend::127.0.0.1:${up.port}::success_rate::-1`,
    ])
      assert.ok(text.split('\n').includes(line), line);
    const j = JSON.parse((await admin('/clusters?format=json')).body) as {
      cluster_statuses: Array<{
        name: string;
        circuit_breakers: { thresholds: Array<Record<string, unknown>> };
        host_statuses: Array<{ health_status: { eds_health_status: string }; stats: { name: string }[] }>;
      }>;
    };
    const c = j.cluster_statuses[0]!;
    assert.equal(c.name, 'backend');
    assert.deepEqual(c.circuit_breakers.thresholds, [
      { max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 },
      {
        priority: 'HIGH',
        max_connections: 1024,
        max_pending_requests: 1024,
        max_requests: 1024,
        max_retries: 3,
      },
    ]);
    assert.equal(c.host_statuses[0]?.health_status.eds_health_status, 'HEALTHY');
    assert.deepEqual(
      c.host_statuses[0]?.stats.map((s) => s.name),
      ['cx_active', 'rq_active'],
    );
  });

  it('/config_dump?resource=&mask= trims each resource; ?name_regex= filters by name', async () => {
    const r = JSON.parse(
      (await admin('/config_dump?resource=static_clusters&mask=cluster.name,cluster.type')).body,
    ) as {
      configs: unknown[];
    };
    assert.deepEqual(r.configs, [{ cluster: { name: 'backend', type: 'STATIC' } }]);
    const m = JSON.parse((await admin('/config_dump?mask=static_listeners')).body) as {
      configs: Array<Record<string, unknown>>;
    };
    assert.deepEqual(
      m.configs.map((c) => Object.keys(c)),
      [['@type', 'static_listeners']],
    );
    const bad = await admin('/config_dump?mask=no_such_field');
    assert.equal(bad.status, 400);
    assert.equal(bad.body, 'FieldMask no_such_field could not be successfully applied to any configs.');
    const none = JSON.parse((await admin('/config_dump?resource=static_clusters&name_regex=back')).body) as {
      configs: unknown[];
    };
    assert.deepEqual(none.configs, []); // a full match, as RE2's
    const some = JSON.parse(
      (await admin('/config_dump?resource=static_clusters&name_regex=back.*')).body,
    ) as {
      configs: unknown[];
    };
    assert.equal(some.configs.length, 1);
  });

  it("/config_dump?include_eds adds the static clusters' endpoints", async () => {
    const j = JSON.parse((await admin('/config_dump?include_eds')).body) as {
      configs: Array<Record<string, unknown>>;
    };
    const eds = j.configs.find(
      (c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump',
    ) as {
      static_endpoint_configs: Array<{ endpoint_config: { cluster_name: string; endpoints: unknown[] } }>;
      dynamic_endpoint_configs?: unknown;
    };
    assert.equal(eds.static_endpoint_configs[0]?.endpoint_config.cluster_name, 'backend');
    assert.equal(eds.dynamic_endpoint_configs, undefined);
    const without = JSON.parse((await admin('/config_dump')).body) as {
      configs: Array<Record<string, unknown>>;
    };
    assert.equal(without.configs.length, 3);
  });

  it('POST /drain_listeners?inboundonly leaves an OUTBOUND listener; without it the listener stops', async () => {
    const port = h.port();
    assert.equal((await admin('/drain_listeners')).status, 405);
    assert.equal((await admin('/drain_listeners?inboundonly', 'POST')).status, 200);
    assert.equal((await request(port)).status, 200);
    // A keep-alive connection opened before the drain is served after it.
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const exchange = () =>
      new Promise<string>((resolve) => {
        let got = '';
        const onData = (c: Buffer) => {
          got += c.toString();
          if (/backend(\r\n0\r\n\r\n)?$/.test(got)) {
            sock.off('data', onData);
            resolve(got);
          }
        };
        sock.on('data', onData);
        sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      });
    assert.match(await exchange(), /^HTTP\/1\.1 200/);
    assert.equal((await admin('/drain_listeners', 'POST')).status, 200);
    assert.equal(await accepts(port), false);
    assert.match(await exchange(), /^HTTP\/1\.1 200/);
    sock.destroy();
    assert.equal(await stat(h.adminPort, 'listener_manager.total_listeners_active'), 0);
  });
});
