// envoy.filters.http.health_check over real sockets: local answers, /healthcheck/fail
// and /healthcheck/ok, pass-through mode, cluster_min_healthy_percentages and the
// not_health_check_filter access-log filter.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Server } from '../../src/server/server.js';
import {
  httpBootstrap,
  indent,
  type Running,
  request,
  startHerald,
  startUpstream,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

async function lines(file: string, n: number): Promise<string[]> {
  const end = Date.now() + 3000;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const got = text.split('\n').filter(Boolean);
    if (got.length >= n || Date.now() > end) return got;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** httpBootstrap with the health_check filter (config `hc`) before the router. */
function withHealthCheck(hc: string, o: Parameters<typeof httpBootstrap>[0]): string {
  const filter = `- name: envoy.filters.http.health_check
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
${indent(hc, 4)}
`;
  return httpBootstrap(o).replace(
    '          http_filters:\n',
    `          http_filters:\n${indent(filter, 10)}`,
  );
}

const HEALTHZ = 'headers: [{ name: ":path", string_match: { exact: /healthz } }]';

function logger(file: string, filter = ''): string {
  return `
- name: envoy.access_loggers.file
${filter ? `  filter: ${filter}\n` : ''}  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${file}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\\n" } }`;
}

const post = (port: number, p: string) => request(port, { path: p, method: 'POST' });

describe('health_check filter', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-hc-'));
  const all = path.join(dir, 'all.log');
  const notHc = path.join(dir, 'not-hc.log');
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('app');
    h = await startHerald(
      withHealthCheck(`pass_through_mode: false\n${HEALTHZ}`, {
        hcmExtra: `access_log:${logger(all)}${logger(notHc, '{ not_health_check_filter: {} }')}`,
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }).replace('static_resources:', 'node: { id: n1, cluster: front }\nstatic_resources:'),
    );
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it('answers /healthz locally, fails with LH after /healthcheck/fail, recovers after /healthcheck/ok', async () => {
    const ok = await request(h.port(), { path: '/healthz' });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-envoy-upstream-healthchecked-cluster'], 'front');
    assert.equal(up.seen.length, 0, 'the upstream never sees a health check');

    const app = await request(h.port(), { path: '/app' });
    assert.equal(app.status, 200);
    assert.equal(app.body, 'app');
    assert.equal(app.headers['x-envoy-immediate-health-check-fail'], undefined);

    assert.equal((await post(h.adminPort, '/healthcheck/fail')).status, 200);
    assert.equal((await request(h.port(), { path: '/healthz' })).status, 503);
    // Other requests still go through, marked so that downstream Envoys stop using this one.
    const failingApp = await request(h.port(), { path: '/app' });
    assert.equal(failingApp.status, 200);
    assert.equal(failingApp.headers['x-envoy-immediate-health-check-fail'], 'true');

    assert.equal((await post(h.adminPort, '/healthcheck/ok')).status, 200);
    assert.equal((await request(h.port(), { path: '/healthz' })).status, 200);
    assert.equal(up.seen.length, 2);

    assert.deepEqual(await lines(all, 5), [
      '/healthz 200 - health_check_ok',
      '/app 200 - via_upstream',
      '/healthz 503 LH health_check_failed',
      '/app 200 - via_upstream',
      '/healthz 200 - health_check_ok',
    ]);
  });

  it('not_health_check_filter keeps health checks out of the log', async () => {
    assert.deepEqual(await lines(notHc, 2), ['/app 200 - via_upstream', '/app 200 - via_upstream']);
  });
});

describe('health_check filter, pass-through and cluster checks', () => {
  it('pass_through_mode forwards health checks upstream, and answers 503 LH while failing', async () => {
    const up = await startUpstream('app');
    const h = await startHerald(
      withHealthCheck(`pass_through_mode: true\n${HEALTHZ}`, {
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }),
    );
    try {
      const r = await request(h.port(), { path: '/healthz' });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'app');
      assert.equal(up.seen.length, 1);
      assert.equal(up.seen[0]!.url, '/healthz');
      await post(h.adminPort, '/healthcheck/fail');
      assert.equal((await request(h.port(), { path: '/healthz' })).status, 503);
      assert.equal(up.seen.length, 1);
      await post(h.adminPort, '/healthcheck/ok');
      assert.equal((await request(h.port(), { path: '/healthz' })).status, 200);
      assert.equal(up.seen.length, 2);
    } finally {
      await h.stop();
      await up.close();
    }
  });

  it('pass_through_mode with cache_time answers from the cached upstream response', async () => {
    let code = 200;
    const up = await startUpstream('app', (_req, res) => {
      res.writeHead(code);
      res.end();
    });
    const h = await startHerald(
      withHealthCheck(`pass_through_mode: true\ncache_time: 60s\n${HEALTHZ}`, {
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }),
    );
    try {
      assert.equal((await request(h.port(), { path: '/healthz' })).status, 200);
      code = 500;
      assert.equal((await request(h.port(), { path: '/healthz' })).status, 200);
      assert.equal(up.seen.length, 1);
    } finally {
      await h.stop();
      await up.close();
    }
  });

  it('cluster_min_healthy_percentages: 503 LH for an empty or unknown cluster, 200 when met', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-hcmin-'));
    const log = path.join(dir, 'a.log');
    const up = await startUpstream('app');
    const mk = (clusters: string) =>
      startHerald(
        withHealthCheck(
          `pass_through_mode: false\n${HEALTHZ}\ncluster_min_healthy_percentages: ${clusters}`,
          {
            hcmExtra: `access_log:${logger(log)}`,
            routes: '- match: { prefix: / }\n  route: { cluster: up }',
            clusters: `${staticCluster('up', [up.port])}
- name: empty
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: empty }`,
          },
        ),
      );
    for (const [clusters, status] of [
      ['{ up: { value: 100 } }', 200],
      ['{ up: { value: 50 }, empty: { value: 10 } }', 503],
      ['{ empty: { value: 0 } }', 200],
      ['{ nowhere: { value: 1 } }', 503],
    ] as const) {
      const h = await mk(clusters);
      try {
        assert.equal((await request(h.port(), { path: '/healthz' })).status, status, clusters);
      } finally {
        await h.stop();
      }
    }
    await up.close();
    assert.deepEqual(await lines(log, 4), [
      '/healthz 200 - health_check_ok_cluster_healthy',
      '/healthz 503 LH health_check_failed_cluster_empty',
      '/healthz 200 - health_check_ok_cluster_healthy',
      '/healthz 503 LH health_check_failed_no_cluster_found',
    ]);
  });

  it('rejects cache_time without pass_through_mode, and a missing pass_through_mode', async () => {
    const bs = (hc: string) =>
      withHealthCheck(hc, {
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [1]),
      });
    await assert.rejects(
      startHerald(bs(`pass_through_mode: false\ncache_time: 1s\n${HEALTHZ}`)),
      /cache_time/,
    );
    await assert.rejects(startHerald(bs(HEALTHZ)), /pass_through_mode/);
  });
});

describe('health_check filter with workers', () => {
  it('/healthcheck/fail and /healthcheck/ok reach every worker', async () => {
    const up = await startUpstream('app');
    const s = await Server.create({
      configYaml: withHealthCheck(`pass_through_mode: false\n${HEALTHZ}`, {
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }),
      concurrency: 2,
    });
    await s.start();
    const port = s.listeners[0]!.boundPort;
    const adminPort = s.admin!.boundPort;
    const statuses = async () => {
      const got = new Set<number>();
      for (let i = 0; i < 12; i++) got.add((await request(port, { path: '/healthz' })).status);
      return [...got];
    };
    try {
      assert.deepEqual(await statuses(), [200]);
      await post(adminPort, '/healthcheck/fail');
      assert.deepEqual(await statuses(), [503]);
      await post(adminPort, '/healthcheck/ok');
      assert.deepEqual(await statuses(), [200]);
    } finally {
      await s.stop();
      await up.close();
    }
  });
});
