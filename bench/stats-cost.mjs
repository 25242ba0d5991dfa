#!/usr/bin/env node
// What stats cost on the request path: the same HTTP/1.1 keep-alive proxy run
// with stats as configured by default (counters, gauges, histograms with
// Envoy's default tags) and with `stats_config.stats_matcher.reject_all: true`
// (every stat a null object). Same layout as bench/run.mjs: Herald pinned to
// core 0, the nginx upstream and wrk on core 1; variants interleaved across
// rounds, each run preceded by a discarded warm-up; medians reported.
//
//   node bench/stats-cost.mjs [--duration 10] [--rounds 3] [--connections 64]
//
// Needs: nginx, wrk, taskset. Prints a Markdown table.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '64' },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Number(args.rounds);
const CONNS = Number(args.connections);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-stats-bench-'));

const children = [];
function start(cmd, argv) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.resume();
  children.push(child);
  return child;
}
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port) {
  const end = Date.now() + 10000;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} did not open`);
}

function heraldConf(port, upstreamPort, rejectAll) {
  return `static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: up } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: up
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } } }] }]
${rejectAll ? 'stats_config: { stats_matcher: { reject_all: true } }\n' : ''}`;
}

function wrk(port) {
  const out = execFileSync(
    'taskset',
    ['-c', '1', 'wrk', '-t1', `-c${CONNS}`, `-d${DURATION}s`, '--latency', `http://127.0.0.1:${port}/`],
    { encoding: 'utf8' },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const m = /^\s+99%\s+([\d.]+)(us|ms|s)/m.exec(out);
  const p99 = m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : 0;
  return { rps, p99 };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const upPort = await freePort();
  const upConf = path.join(work, 'upstream.conf');
  fs.writeFileSync(
    upConf,
    `worker_processes 1; daemon off; pid ${work}/up.pid; error_log ${work}/up.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work}; uwsgi_temp_path ${work}; scgi_temp_path ${work};
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${upPort}; location / { return 200 "${'x'.repeat(100)}"; } } }`,
  );
  const upstream = start('taskset', ['-c', '1', 'nginx', '-c', upConf, '-p', work]);
  await waitPort(upPort);
  const variants = { 'stats on (default)': false, 'stats_matcher reject_all': true };
  const results = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, rejectAll] of Object.entries(variants)) {
      const port = await freePort();
      const cfg = path.join(work, `herald-${rejectAll}.yaml`);
      fs.writeFileSync(cfg, heraldConf(port, upPort, rejectAll));
      const child = start('taskset', [
        '-c',
        '0',
        process.execPath,
        path.join(root, 'dist/bundle/main.js'),
        '-c',
        cfg,
        // One process: the proxy is pinned to one core.
        '--concurrency',
        '1',
        '-l',
        'warning',
      ]);
      await waitPort(port);
      wrk(port); // warm-up, discarded
      const r = wrk(port);
      child.kill('SIGTERM');
      await new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));
      (results[name] ??= []).push(r);
      process.stderr.write(
        `round ${round + 1} ${name}: ${r.rps.toFixed(0)} req/s p99 ${r.p99.toFixed(2)} ms\n`,
      );
    }
  }
  upstream.kill('SIGTERM');
  const base = median(results['stats_matcher reject_all'].map((x) => x.rps));
  const lines = [
    '| variant | req/s (median) | rounds | p99 ms | vs reject_all |',
    '| --- | ---: | --- | ---: | ---: |',
  ];
  for (const [name, runs] of Object.entries(results)) {
    const rps = median(runs.map((x) => x.rps));
    lines.push(
      `| ${name} | ${rps.toFixed(0)} | ${runs.map((x) => (x.rps / 1000).toFixed(1)).join(' / ')}k | ${median(runs.map((x) => x.p99)).toFixed(2)} | ${((rps / base - 1) * 100).toFixed(1)}% |`,
    );
  }
  console.log(lines.join('\n'));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
