// The admin API over real sockets after real traffic: /stats, /clusters,
// /listeners, /config_dump, /ready, /server_info and POST-only endpoints.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Level, setAllLevels } from '../../src/common/logger.js';
import { cluster, type EchoUpstream, httpConfig, startEcho } from '../helpers/data-path.js';
import { type Running, request, startHerald, stat } from '../helpers/harness.js';

describe('admin', () => {
  let a: EchoUpstream;
  let b: EchoUpstream;
  let h: Running;
  before(async () => {
    a = await startEcho('a');
    b = await startEcho('b');
    h = await startHerald(
      httpConfig({
        routes: [
          { match: { prefix: '/missing' }, direct_response: { status: 404 } },
          { match: { prefix: '/' }, route: { cluster: 'backend' } },
        ],
        clusters: [cluster('backend', [a.port, b.port])],
      }),
    );
    for (let i = 0; i < 4; i++) assert.equal((await request(h.port(), { path: `/t${i}` })).status, 200);
    assert.equal((await request(h.port(), { path: '/missing' })).status, 404);
  });
  after(async () => {
    await h.stop();
    await a.close();
    await b.close();
  });

  const admin = (path: string, method = 'GET') => request(h.adminPort, { path, method });

  it('/stats counts downstream and upstream requests after traffic', async () => {
    assert.equal(await stat(h.adminPort, 'http.test.downstream_rq_total'), 5);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_rq_2xx'), 4);
    assert.equal(await stat(h.adminPort, 'http.test.downstream_rq_4xx'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_200'), 4);
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_2xx'), 4);
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_total'), 4);
    assert.equal(await stat(h.adminPort, 'cluster.backend.membership_total'), 2);
    assert.equal(await stat(h.adminPort, 'cluster.backend.upstream_rq_active'), 0);
  });

  it('/stats in text: sorted "name: value" lines, with a regex filter', async () => {
    const r = await admin('/stats?filter=^cluster\\.backend\\.upstream_rq_(200|total)$');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'cluster.backend.upstream_rq_200: 4\ncluster.backend.upstream_rq_total: 4\n');
    // Counters and gauges first, sorted; then histograms, sorted.
    const all = (await admin('/stats')).body.trimEnd().split('\n');
    assert.ok(all.length > 20);
    const numeric = all.filter((l) => /^[\w.[\]-]+: -?\d+$/.test(l));
    const hist = all.slice(numeric.length);
    assert.ok(numeric.length > 20);
    assert.deepEqual([...numeric].sort(), numeric);
    for (const line of hist) assert.match(line, /^[\w.[\]-]+: (No recorded values|P0\(.*)$/, line);
    assert.deepEqual([...hist].sort(), hist);
  });

  it('/stats?usedonly leaves out stats never written (Envoy: a gauge back at 0 stays)', async () => {
    const r = await admin('/stats?usedonly&filter=^cluster\\.backend\\.');
    assert.match(r.body, /^cluster\.backend\.upstream_rq_200: 4$/m);
    assert.match(r.body, /^cluster\.backend\.upstream_rq_active: 0$/m);
    assert.doesNotMatch(r.body, /upstream_rq_timeout/);
    assert.doesNotMatch(r.body, /upstream_cx_connect_fail/);
  });

  it('/clusters lists each host with its address and health', async () => {
    const r = await admin('/clusters');
    assert.equal(r.status, 200);
    for (const port of [a.port, b.port]) {
      assert.match(r.body, new RegExp(`^backend::127\\.0\\.0\\.1:${port}::health_flags::healthy$`, 'm'));
      assert.match(r.body, new RegExp(`^backend::127\\.0\\.0\\.1:${port}::weight::1$`, 'm'));
      assert.match(r.body, new RegExp(`^backend::127\\.0\\.0\\.1:${port}::rq_active::0$`, 'm'));
    }
    const j = JSON.parse((await admin('/clusters?format=json')).body) as {
      cluster_statuses: {
        name: string;
        host_statuses: { address: { socket_address: { port_value: number } } }[];
      }[];
    };
    const c = j.cluster_statuses.find((x) => x.name === 'backend');
    assert.deepEqual(
      c?.host_statuses.map((x) => x.address.socket_address.port_value).sort(),
      [a.port, b.port].sort(),
    );
  });

  it('/listeners shows the bound port, in text and JSON', async () => {
    assert.equal((await admin('/listeners')).body, `main::127.0.0.1:${h.port()}\n`);
    const j = JSON.parse((await admin('/listeners?format=json')).body) as {
      listener_statuses: {
        name: string;
        local_address: { socket_address: { address: string; port_value: number } };
      }[];
    };
    assert.deepEqual(j.listener_statuses, [
      { name: 'main', local_address: { socket_address: { address: '127.0.0.1', port_value: h.port() } } },
    ]);
  });

  it('/config_dump holds the bootstrap, the static clusters and the static listeners', async () => {
    const r = await admin('/config_dump');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^application\/json/);
    const configs = (JSON.parse(r.body) as { configs: Array<Record<string, unknown>> }).configs;
    // Envoy may add more dumps (routes, secrets, ...); these three come first, in this order.
    const types = configs.map((c) => c['@type']);
    assert.deepEqual(types.slice(0, 3), [
      'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump',
      'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
      'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
    ]);
    const boot = configs[0]!.bootstrap as {
      static_resources: { clusters: { name: string }[]; listeners: { name: string }[] };
    };
    assert.deepEqual(
      boot.static_resources.clusters.map((c) => c.name),
      ['backend'],
    );
    assert.deepEqual(
      boot.static_resources.listeners.map((l) => l.name),
      ['main'],
    );
    const sc = configs[1]!.static_clusters as { cluster: { name: string } }[];
    assert.equal(sc[0]?.cluster.name, 'backend');
  });

  it('/ready is LIVE and /server_info reports the state', async () => {
    const r = await admin('/ready');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'LIVE\n');
    const info = JSON.parse((await admin('/server_info')).body) as { state: string };
    assert.equal(info.state, 'LIVE');
  });

  it('an unknown admin path is 404 and lists the commands', async () => {
    const r = await admin('/no-such-thing');
    assert.equal(r.status, 404);
    assert.match(r.body, /^invalid path/);
    assert.match(r.body, /\/stats/);
  });

  it('GET on a POST-only endpoint is refused and changes nothing', async () => {
    for (const path of ['/healthcheck/fail', '/healthcheck/ok', '/quitquitquit']) {
      const r = await admin(path);
      assert.ok(r.status === 400 || r.status === 405, `${path}: ${r.status}`);
    }
    // The server is still up and serving.
    assert.equal((await admin('/ready')).body, 'LIVE\n');
    assert.equal((await request(h.port(), { path: '/again' })).status, 200);
  });

  it('GET on a POST-only endpoint: 405 "Method GET not allowed, POST required."', async () => {
    const r = await admin('/healthcheck/fail');
    assert.equal(r.status, 405);
    assert.equal(r.body, 'Method GET not allowed, POST required.');
  });

  it('POST /healthcheck/fail and /healthcheck/ok answer OK', async () => {
    const r1 = await admin('/healthcheck/fail', 'POST');
    assert.equal(r1.status, 200);
    assert.equal(r1.body, 'OK\n');
    const r2 = await admin('/healthcheck/ok', 'POST');
    assert.equal(r2.status, 200);
  });
});

describe('admin /logging', () => {
  it('lists loggers and changes one or all levels (POST only)', async () => {
    const h = await startHerald(
      `admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }\nstatic_resources: {}\n`,
    );
    try {
      const post = (q: string) => request(h.adminPort, { path: `/logging${q}`, method: 'POST' });
      assert.equal((await request(h.adminPort, { path: '/logging?level=debug' })).status, 405);
      const one = await post('?upstream=trace');
      assert.equal(one.status, 200);
      assert.match(one.body, /^active loggers:\n/);
      assert.match(one.body, /\n {2}upstream: trace\n/);
      const all = await post('?level=warning');
      assert.match(all.body, /\n {2}upstream: warning\n/);
      assert.match(all.body, /\n {2}http: warning\n/);
      assert.equal((await post('?nosuch=debug')).status, 404);
    } finally {
      await h.stop();
      setAllLevels(Level.error); // as the harness leaves it
    }
  });
});
