// Admin answers over 100k endpoints are written in pieces: the event loop keeps turning
// and proxied requests keep being answered while /config_dump?include_eds (~130 MB) and
// /clusters are written, and what arrives is the same JSON as before. Built as one
// string, the dump blocked the event loop for ~2 s.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { bigBootstrapYaml } from '../config/big-bootstrap.js';
import { type Running, request, startHerald, startUpstream, type Upstream } from '../helpers/harness.js';

const N = Number(process.env.HERALD_BIG_ENDPOINTS ?? 100_000);

interface Watched {
  bytes: number;
  body: Buffer[] | undefined;
  ms: number;
  /** Turns of the event loop (setImmediate) while the answer came. */
  ticks: number;
  /** The longest the event loop went without turning. */
  maxGapMs: number;
  /** Proxied requests answered while the answer came. */
  proxied: number;
}

/** GETs an admin path while watching the event loop and sending proxied requests one after another. */
async function watch(adminPort: number, path: string, proxyPort: number, keep: boolean): Promise<Watched> {
  let ticks = 0;
  let maxGapMs = 0;
  let last = performance.now();
  let running = true;
  const tick = () => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  let proxied = 0;
  const proxying = (async () => {
    while (running) {
      const r = await request(proxyPort, { path: '/during-dump' });
      if (running && r.status === 200) proxied++;
    }
  })();
  const started = performance.now();
  const out = await new Promise<{ bytes: number; body: Buffer[] | undefined }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: adminPort, path, agent: false }, (res) => {
        const body: Buffer[] | undefined = keep ? [] : undefined;
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          body?.push(c);
        });
        res.on('end', () => resolve({ bytes, body }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
  const ms = performance.now() - started;
  running = false;
  await proxying;
  return { ...out, ms, ticks, maxGapMs, proxied };
}

/** The event loop went on turning: no single stall took a large part of the answer's time. */
function assertLoopTurned(w: Watched, what: string): void {
  const detail = `${what}: ${w.bytes} bytes in ${w.ms.toFixed(0)} ms, ${w.ticks} turns, longest stall ${w.maxGapMs.toFixed(0)} ms, ${w.proxied} proxied requests`;
  // Generous for a loaded machine: the bound scales with the answer's own duration.
  assert.ok(w.maxGapMs < Math.max(250, w.ms * 0.25), detail);
  assert.ok(w.ticks > 50, detail);
  assert.ok(w.proxied >= 3, detail);
}

describe(`admin answers over ${N} endpoints`, () => {
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('small');
    h = await startHerald(bigBootstrapYaml(N, { upstreamPort: up.port }));
    // The protos load on the first dump (once per process): not what is measured.
    await request(h.adminPort, { path: '/config_dump?resource=dynamic_active_clusters' });
  });
  after(async () => {
    await h?.stop();
    await up?.close();
  });

  it('/config_dump?include_eds: written in pieces, proxied traffic flowing, every endpoint in the JSON', async (t) => {
    const w = await watch(h.adminPort, '/config_dump?include_eds', h.port(), true);
    t.diagnostic(
      `${w.bytes} bytes in ${w.ms.toFixed(0)} ms, longest stall ${w.maxGapMs.toFixed(0)} ms, ${w.ticks} turns, ${w.proxied} proxied`,
    );
    assertLoopTurned(w, '/config_dump?include_eds');
    const dump = JSON.parse(Buffer.concat(w.body!).toString()) as {
      configs: Array<Record<string, unknown>>;
    };
    w.body = undefined;
    const eds = dump.configs.find(
      (c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump',
    ) as {
      static_endpoint_configs: Array<{ endpoint_config: { cluster_name: string; endpoints: unknown[] } }>;
    };
    const big = eds.static_endpoint_configs.find((e) => e.endpoint_config.cluster_name === 'big')!;
    assert.equal(big.endpoint_config.endpoints.length, N);
    const boot = dump.configs[0] as {
      bootstrap: {
        static_resources: {
          clusters: Array<{
            name: string;
            load_assignment: { endpoints: Array<{ lb_endpoints: unknown[] }> };
          }>;
        };
      };
    };
    const bc = boot.bootstrap.static_resources.clusters.find((c) => c.name === 'big')!;
    assert.equal(bc.load_assignment.endpoints[0]!.lb_endpoints.length, N);
  });

  it('/clusters and /clusters?format=json: written in pieces, one entry per host', async () => {
    const text = await watch(h.adminPort, '/clusters', h.port(), true);
    assertLoopTurned(text, '/clusters');
    const lines = Buffer.concat(text.body!).toString().split('\n');
    assert.equal(lines.filter((l) => l.startsWith('big::') && l.endsWith('::weight::1')).length, N);
    const json = await watch(h.adminPort, '/clusters?format=json', h.port(), false);
    assertLoopTurned(json, '/clusters?format=json');
  });
});
