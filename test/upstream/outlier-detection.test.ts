// Outlier detection over real sockets: consecutive 5xx ejects a host (and traffic
// shifts), it returns after base_ejection_time; max_ejection_percent caps ejections;
// gateway failures are detected but, by Envoy's default, not enforced; connect
// failures count as 5xx unless split into local-origin errors; and a passing active
// health check ends an ejection early.
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  adminGet,
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  stat,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

async function eventually(what: string, fn: () => Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function flags(h: Running, cluster: string): Promise<Map<number, string>> {
  const r = await adminGet(h.adminPort, '/clusters');
  const out = new Map<number, string>();
  for (const line of r.body.split('\n')) {
    const m = line.match(/^([^:]+)::127\.0\.0\.1:(\d+)::health_flags::(.*)$/);
    if (m && m[1] === cluster) out.set(Number(m[2]), m[3]!);
  }
  return out;
}

/** An upstream answering `state.status` on every path but /healthz (always 200). */
function upstream(name: string, state: { status: number }): Promise<Upstream> {
  return startUpstream(name, (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(req.url === '/healthz' ? 200 : state.status, { 'x-upstream': name });
    res.end(name);
  });
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Sends requests to `path` until `done()` or n requests; returns who answered with what. */
async function send(h: Running, path: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(h.port(), { path });
    out.push(`${r.headers['x-upstream'] ?? 'local'}:${r.status}`);
  }
  return out;
}

const od = (extra: string) => `outlier_detection:
  interval: 0.1s
  base_ejection_time: 0.3s
${extra
  .split('\n')
  .map((l) => `  ${l}`)
  .join('\n')}`;

describe('outlier detection', () => {
  const badState = { status: 500 };
  const gwState = { status: 503 };
  let good: Upstream;
  let bad: Upstream;
  let bad2: Upstream;
  let gw: Upstream;
  let hcBad: Upstream;
  let dead = 0;
  let dead2 = 0;
  let h: Running;

  before(async () => {
    good = await upstream('good', { status: 200 });
    bad = await upstream('bad', badState);
    bad2 = await upstream('bad2', { status: 500 });
    gw = await upstream('gw', gwState);
    hcBad = await upstream('hcbad', { status: 500 });
    dead = await closedPort();
    dead2 = await closedPort();
    const route = (p: string) => `- match: { prefix: /${p} }\n  route: { cluster: ${p} }`;
    h = await startHerald(
      httpBootstrap({
        routes: ['c5xx', 'overflow', 'gateway', 'connect', 'split', 'hcuneject'].map(route).join('\n'),
        clusters: [
          staticCluster('c5xx', [good.port, bad.port], od('max_ejection_percent: 50')),
          // Default max_ejection_percent (10%): one host of two is 50%, too many to eject.
          staticCluster('overflow', [good.port, bad2.port], od('')),
          staticCluster(
            'gateway',
            [good.port, gw.port],
            od('max_ejection_percent: 50\nconsecutive_5xx: 1000\nconsecutive_gateway_failure: 3'),
          ),
          staticCluster('connect', [good.port, dead], od('max_ejection_percent: 50\nconsecutive_5xx: 3')),
          staticCluster(
            'split',
            [good.port, dead2],
            od(
              'max_ejection_percent: 50\nconsecutive_5xx: 1000\nsplit_external_local_origin_errors: true\nconsecutive_local_origin_failure: 3',
            ),
          ),
          staticCluster(
            'hcuneject',
            [good.port, hcBad.port],
            `${od('max_ejection_percent: 50\nbase_ejection_time: 300s').replace('  base_ejection_time: 0.3s\n', '')}
health_checks:
- timeout: 1s
  interval: 0.1s
  no_traffic_interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  http_health_check: { path: /healthz }`,
          ),
        ].join('\n'),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of [good, bad, bad2, gw, hcBad]) await u.close();
  });

  it('5 consecutive 5xx eject the host; traffic shifts; it returns after base_ejection_time', async () => {
    const seen = await send(h, '/c5xx', 10); // round robin: 5 go to the bad host
    assert.equal(seen.filter((s) => s === 'bad:500').length, 5);
    assert.equal((await flags(h, 'c5xx')).get(bad.port), '/failed_outlier_check');
    assert.equal(
      await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_enforced_consecutive_5xx'),
      1,
    );
    assert.equal(
      await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_detected_consecutive_5xx'),
      1,
    );
    assert.equal(await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_enforced_total'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_total'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_active'), 1);
    const during = Date.now();
    // While it lasts, only the good host serves (1 of 2 healthy is not below the 50% panic threshold).
    const shifted = await send(h, '/c5xx', 6);
    if (Date.now() - during < 250) assert.deepEqual(new Set(shifted), new Set(['good:200']));
    badState.status = 200;
    await eventually('bad back', async () => (await flags(h, 'c5xx')).get(bad.port) === 'healthy');
    assert.equal(await stat(h.adminPort, 'cluster.c5xx.outlier_detection.ejections_active'), 0);
    assert.deepEqual(new Set(await send(h, '/c5xx', 6)), new Set(['good:200', 'bad:200']));
  });

  it('max_ejection_percent: an ejection over the limit only counts ejections_overflow', async () => {
    const seen = await send(h, '/overflow', 16);
    assert.equal(seen.filter((s) => s === 'bad2:500').length, 8);
    assert.equal((await flags(h, 'overflow')).get(bad2.port), 'healthy');
    assert.equal(await stat(h.adminPort, 'cluster.overflow.outlier_detection.ejections_overflow'), 1);
    assert.equal(await stat(h.adminPort, 'cluster.overflow.outlier_detection.ejections_active'), 0);
    assert.equal(
      await stat(h.adminPort, 'cluster.overflow.outlier_detection.ejections_enforced_consecutive_5xx'),
      0,
    );
  });

  it('consecutive gateway failures are detected but not enforced by default', async () => {
    const seen = await send(h, '/gateway', 6);
    assert.equal(seen.filter((s) => s === 'gw:503').length, 3);
    assert.equal(
      await stat(
        h.adminPort,
        'cluster.gateway.outlier_detection.ejections_detected_consecutive_gateway_failure',
      ),
      1,
    );
    assert.equal(
      await stat(
        h.adminPort,
        'cluster.gateway.outlier_detection.ejections_enforced_consecutive_gateway_failure',
      ),
      0,
    );
    assert.equal((await flags(h, 'gateway')).get(gw.port), 'healthy');
  });

  it('connect failures count as 5xx when local-origin errors are not split', async () => {
    const seen = await send(h, '/connect', 6);
    assert.equal(seen.filter((s) => s === 'local:503').length, 3);
    assert.equal((await flags(h, 'connect')).get(dead), '/failed_outlier_check');
    assert.equal(
      await stat(h.adminPort, 'cluster.connect.outlier_detection.ejections_enforced_consecutive_5xx'),
      1,
    );
  });

  it('split_external_local_origin_errors: connect failures eject as consecutive_local_origin_failure', async () => {
    const seen = await send(h, '/split', 6);
    assert.equal(seen.filter((s) => s === 'local:503').length, 3);
    assert.equal((await flags(h, 'split')).get(dead2), '/failed_outlier_check');
    assert.equal(
      await stat(
        h.adminPort,
        'cluster.split.outlier_detection.ejections_enforced_consecutive_local_origin_failure',
      ),
      1,
    );
    assert.equal(
      await stat(h.adminPort, 'cluster.split.outlier_detection.ejections_enforced_consecutive_5xx'),
      0,
    );
  });

  it('a passing active health check ends an ejection (successful_active_health_check_uneject_host)', async () => {
    await send(h, '/hcuneject', 10);
    assert.equal(
      await stat(h.adminPort, 'cluster.hcuneject.outlier_detection.ejections_enforced_consecutive_5xx'),
      1,
    );
    // base_ejection_time is 300 s; the health check (every 100 ms, /healthz answers 200) lets it back.
    await eventually(
      'hcbad unejected',
      async () => (await stat(h.adminPort, 'cluster.hcuneject.outlier_detection.ejections_active')) === 0,
    );
    assert.equal((await flags(h, 'hcuneject')).get(hcBad.port), 'healthy');
  });
});

describe('outlier detection: failure percentage', () => {
  const ups: Upstream[] = [];
  let h: Running;
  before(async () => {
    for (let i = 0; i < 4; i++) ups.push(await upstream(`ok${i}`, { status: 200 }));
    ups.push(await upstream('flaky', { status: 500 }));
    h = await startHerald(
      httpBootstrap({
        routes: `- match: { prefix: / }
  route: { cluster: fp }`,
        clusters: staticCluster(
          'fp',
          ups.map((u) => u.port),
          `outlier_detection:
  interval: 0.3s
  base_ejection_time: 30s
  consecutive_5xx: 100000
  max_ejection_percent: 50
  enforcing_failure_percentage: 100
  failure_percentage_minimum_hosts: 5
  failure_percentage_request_volume: 5`,
        ),
      }),
    );
  });
  after(async () => {
    await h.stop();
    for (const u of ups) await u.close();
  });

  it("a host failing at least failure_percentage_threshold of an interval's requests is ejected", async () => {
    const flaky = ups[4]!.port;
    await eventually(
      'flaky ejected',
      async () => {
        await send(h, '/', 20);
        return (await flags(h, 'fp')).get(flaky) === '/failed_outlier_check';
      },
      15_000,
    );
    assert.equal(
      await stat(h.adminPort, 'cluster.fp.outlier_detection.ejections_enforced_failure_percentage'),
      1,
    );
    assert.equal(
      await stat(h.adminPort, 'cluster.fp.outlier_detection.ejections_enforced_consecutive_5xx'),
      0,
    );
    // The healthy hosts stay in.
    const f = await flags(h, 'fp');
    for (const u of ups.slice(0, 4)) assert.equal(f.get(u.port), 'healthy');
    assert.ok(!(await send(h, '/', 8)).includes('flaky:500'));
  });
});
