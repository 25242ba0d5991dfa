#!/usr/bin/env node
// The talk's connection-balancing experiment on Herald: 2 worker processes in
// front of an nginx upstream, HTTP/1.1 keep-alive load at 2..256 connections,
// kernel balancing (every worker accepts on the shared socket) vs
// exact_balance (the main process hands each connection to the worker with
// the fewest), interleaved, three runs per point. Also: throughput with 1 vs 2
// workers, through the upstream and with a direct_response route.
//
//   node bench/workers.mjs [--duration 5] [--rounds 3] [--conns 2,4,8,16,32,64,128,256]
//
// Needs nginx and wrk. Prints Markdown tables and writes bench/workers-chart.svg.
// On a 2-core machine the load generator, nginx and Herald's processes share
// the same cores; the figures say how Herald behaves under that contention.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '2,4,8,16,32,64,128,256' },
    scaling: { type: 'string', default: 'yes' },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Number(args.rounds);
const CONNS = args.conns.split(',').map(Number);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-wbench-'));

const children = [];
function start(cmd, argv) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => {
    err = (err + d).slice(-5000);
  });
  child.errText = () => err;
  children.push(child);
  return child;
}
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});
process.on('SIGINT', () => process.exit(130));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitHttp(port, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      http
        .get({ host: '127.0.0.1', port, path: '/' }, (res) => {
          res.resume();
          r(true);
        })
        .on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} did not answer`);
}

function adminStats(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats?format=json&filter=worker_' }, (res) => {
        let b = '';
        res.on('data', (d) => {
          b += d;
        });
        res.on('end', () => {
          const out = {};
          for (const s of JSON.parse(b).stats ?? []) if ('value' in s) out[s.name] = s.value;
          resolve(out);
        });
      })
      .on('error', reject);
  });
}

function heraldConf(port, adminPort, upstreamPort, exact, direct) {
  const route = direct
    ? '{ match: { prefix: / }, direct_response: { status: 200, body: { inline_string: "ok" } } }'
    : '{ match: { prefix: / }, route: { cluster: up } }';
  return `admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${adminPort} } } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
${exact ? '    connection_balance_config: { exact_balance: {} }\n' : ''}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [${route}] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: up
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } } }] }]
`;
}

async function startHerald(name, upstreamPort, { exact = false, direct = false, concurrency = 2 }) {
  const port = await freePort();
  const admin = await freePort();
  const cfg = path.join(work, `${name}.yaml`);
  fs.writeFileSync(cfg, heraldConf(port, admin, upstreamPort, exact, direct));
  const child = start(process.execPath, [
    path.join(root, 'bin', 'herald'),
    '-c',
    cfg,
    '--concurrency',
    String(concurrency),
    '-l',
    'warning',
  ]);
  await waitHttp(port);
  return { name, port, admin, child };
}

function wrk(port, conns) {
  const out = execFileSync(
    'wrk',
    [`-t${Math.min(2, conns)}`, `-c${conns}`, `-d${DURATION}s`, '--latency', `http://127.0.0.1:${port}/`],
    { encoding: 'utf8' },
  );
  const unit = (v, u) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  const lat = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    return m ? unit(m[1], m[2]) : 0;
  };
  const avg = /Latency\s+([\d.]+)(us|ms|s)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    mean: avg ? unit(avg[1], avg[2]) : 0,
    p50: lat('50'),
    p90: lat('90'),
    p99: lat('99'),
    errors:
      Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + (/Socket errors/.test(out) ? 1 : 0),
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function measure(h, conns) {
  const before = await adminStats(h.admin);
  const r = wrk(h.port, conns);
  const after = await adminStats(h.admin);
  const per = [];
  for (let i = 0; ; i++) {
    const k = `listener.127.0.0.1_${h.port}.worker_${i}.downstream_cx_total`;
    if (!(k in after)) break;
    per.push((after[k] ?? 0) - (before[k] ?? 0));
  }
  return { ...r, per };
}

function svgChart(rows) {
  // Two panels: QPS and p90 against connections (log2 x axis), one line per mode.
  const W = 720;
  const H = 300;
  const pad = 50;
  const modes = ['kernel', 'exact'];
  const colors = { kernel: '#d62728', exact: '#1f77b4' };
  const xs = CONNS.map((c) => Math.log2(c));
  const x = (c) => pad + ((Math.log2(c) - xs[0]) / (xs[xs.length - 1] - xs[0] || 1)) * (W - 2 * pad);
  const panel = (key, label, top) => {
    const vals = rows.map((r) => r[key]);
    const max = Math.max(...vals) * 1.1 || 1;
    const y = (v) => top + H - pad - (v / max) * (H - 2 * pad);
    let s = `<text x="${W / 2}" y="${top + 20}" text-anchor="middle" font-size="14">${label}</text>`;
    s += `<line x1="${pad}" y1="${top + H - pad}" x2="${W - pad}" y2="${top + H - pad}" stroke="#000"/>`;
    s += `<line x1="${pad}" y1="${top + pad}" x2="${pad}" y2="${top + H - pad}" stroke="#000"/>`;
    for (const c of CONNS)
      s += `<text x="${x(c)}" y="${top + H - pad + 15}" text-anchor="middle" font-size="10">${c}</text>`;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      s += `<text x="${pad - 5}" y="${y(v) + 3}" text-anchor="end" font-size="10">${key === 'rps' ? Math.round(v) : v.toFixed(1)}</text>`;
    }
    for (const m of modes) {
      const pts = rows.filter((r) => r.mode === m).map((r) => `${x(r.conns)},${y(r[key])}`);
      s += `<polyline fill="none" stroke="${colors[m]}" stroke-width="2" points="${pts.join(' ')}"/>`;
      s += `<text x="${W - pad}" y="${top + 35 + modes.indexOf(m) * 14}" text-anchor="end" font-size="11" fill="${colors[m]}">${m === 'exact' ? 'exact_balance' : 'kernel balance'}</text>`;
    }
    return s;
  };
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H + 20}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
${panel('rps', 'Requests/s vs connections (2 workers, HTTP/1.1 keep-alive)', 0)}
${panel('p90', 'p90 latency (ms) vs connections', H)}
<text x="${W / 2}" y="${2 * H + 12}" text-anchor="middle" font-size="11">connections (log scale)</text>
</svg>
`;
}

async function main() {
  const upPort = await freePort();
  fs.writeFileSync(
    path.join(work, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${work}/nginx.pid; error_log ${work}/nginx.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work}; uwsgi_temp_path ${work}; scgi_temp_path ${work};
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${upPort}; location / { return 200 "${'x'.repeat(100)}"; } } }`,
  );
  start('nginx', ['-c', path.join(work, 'nginx.conf'), '-p', work]);
  await waitHttp(upPort);
  const kernel = await startHerald('kernel', upPort, { exact: false });
  const exact = await startHerald('exact', upPort, { exact: true });
  const results = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of CONNS) {
      for (const [mode, h] of round % 2
        ? [
            ['exact', exact],
            ['kernel', kernel],
          ]
        : [
            ['kernel', kernel],
            ['exact', exact],
          ]) {
        const r = await measure(h, c);
        results.push({ mode, conns: c, round, ...r });
        console.error(
          `round ${round + 1} c=${c} ${mode}: ${Math.round(r.rps)} req/s mean ${r.mean.toFixed(2)} p90 ${r.p90.toFixed(2)} p99 ${r.p99.toFixed(2)} ms per-worker ${r.per.join('/')}${r.errors ? ` errors ${r.errors}` : ''}`,
        );
      }
    }
  }
  const rows = [];
  for (const c of CONNS)
    for (const mode of ['kernel', 'exact']) {
      const rs = results.filter((r) => r.mode === mode && r.conns === c);
      const mid = rs.slice().sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)];
      rows.push({
        mode,
        conns: c,
        rps: median(rs.map((r) => r.rps)),
        mean: median(rs.map((r) => r.mean)),
        p50: median(rs.map((r) => r.p50)),
        p90: median(rs.map((r) => r.p90)),
        p99: median(rs.map((r) => r.p99)),
        per: mid.per,
      });
    }
  console.log(
    '| connections | balance | req/s | mean ms | p50 ms | p90 ms | p99 ms | connections per worker |',
  );
  console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rows)
    console.log(
      `| ${r.conns} | ${r.mode} | ${Math.round(r.rps)} | ${r.mean.toFixed(2)} | ${r.p50.toFixed(2)} | ${r.p90.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.per.join(' / ')} |`,
    );
  console.log('\n| connections | exact vs kernel req/s | mean latency | p90 |');
  console.log('| ---: | ---: | ---: | ---: |');
  for (const c of CONNS) {
    const k = rows.find((r) => r.conns === c && r.mode === 'kernel');
    const e = rows.find((r) => r.conns === c && r.mode === 'exact');
    const pct = (a, b) => `${a >= b ? '+' : ''}${(((a - b) / b) * 100).toFixed(1)}%`;
    console.log(`| ${c} | ${pct(e.rps, k.rps)} | ${pct(e.mean, k.mean)} | ${pct(e.p90, k.p90)} |`);
  }
  fs.writeFileSync(path.join(here, 'workers-chart.svg'), svgChart(rows));
  kernel.child.kill('SIGTERM');
  exact.child.kill('SIGTERM');

  if (args.scaling === 'yes') {
    // Scaling 1 -> 2 workers, through nginx and with direct_response, 64 connections.
    console.log('\n| route | workers | req/s | p99 ms |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const direct of [false, true]) {
      for (const concurrency of [1, 2]) {
        const h = await startHerald(`scale-${direct}-${concurrency}`, upPort, { direct, concurrency });
        const rs = [];
        for (let i = 0; i < ROUNDS; i++) rs.push(wrk(h.port, 64));
        h.child.kill('SIGTERM');
        console.log(
          `| ${direct ? 'direct_response' : 'nginx upstream'} | ${concurrency} | ${Math.round(median(rs.map((r) => r.rps)))} | ${median(rs.map((r) => r.p99)).toFixed(2)} |`,
        );
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
