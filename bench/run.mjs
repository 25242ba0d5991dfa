#!/usr/bin/env node
// Proxy comparison on this machine: Herald vs nginx (as proxy) vs
// node-http-proxy, plus a bare Node TCP pipe as the floor of any Node proxy.
//
// Layout (2 cores): every proxy is pinned to core 0; the nginx upstream and the
// load generator share core 1. Candidates run one at a time, interleaved across
// rounds; each figure is the median of the rounds.
//
//   node bench/run.mjs [--duration 10] [--rounds 3] [--only herald,nginx] [--scenarios h1,h1close,h2,tcp]
//                      [--idle-wait 10] [--baseline DIR]
//
// --baseline DIR adds a candidate 'herald-base': another built checkout of Herald (DIR holds
// its dist/bundle/main.js), run in the same rounds, to compare two builds on the same day.
//
// Idle RSS is sampled twice before any load, the same way for every candidate:
// 0.3 s after the port opens, and after --idle-wait seconds. The second is the
// "idle RSS" reported: V8 gives back the heap it grew while starting (young
// generation, free pages) only once its memory reducer finds the process idle,
// ~8 s after start, so an early sample says more about when it was taken than
// about what an idle proxy keeps.
//
// Needs: nginx, wrk, h2load (nghttp2-client), taskset. Prints a Markdown table.
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
    only: { type: 'string' },
    scenarios: { type: 'string', default: 'h1,h1close,h2,tcp' },
    connections: { type: 'string', default: '64' },
    'idle-wait': { type: 'string', default: '10' },
    baseline: { type: 'string' },
  },
});
const DURATION = Number(args.duration);
const ROUNDS = Number(args.rounds);
const CONNS = Number(args.connections);
const IDLE_WAIT_MS = Number(args['idle-wait']) * 1000;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-bench-'));
const BODY = 'x'.repeat(100);

const children = [];
function start(cmd, argv, opts = {}) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
    if (err.length > 20000) err = err.slice(-10000);
  });
  child.errText = () => err;
  children.push(child);
  return child;
}
function stopAll() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port, ms = 10000) {
  const end = Date.now() + ms;
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

function rssKb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function nginxConf(kind, port, upstreamPort, h2Port = port + 1) {
  const common = `worker_processes 1; daemon off; pid ${work}/nginx-${kind}-${port}.pid; error_log ${work}/nginx-${kind}.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${work}; proxy_temp_path ${work}; fastcgi_temp_path ${work}; uwsgi_temp_path ${work}; scgi_temp_path ${work};
  keepalive_requests 1000000;`;
  if (kind === 'upstream')
    return `${common} server { listen 127.0.0.1:${port}; location / { return 200 "${BODY}"; } } }`;
  return `${common}
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 256; }
  server { listen 127.0.0.1:${port}; listen 127.0.0.1:${h2Port} http2;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }`;
}

function heraldConf(port, upstreamPort, kind) {
  const cluster = `
  clusters:
  - name: up
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} } } } }] }]`;
  if (kind === 'tcp')
    return `static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: up }
${cluster}`;
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
${cluster}`;
}

const heraldAt = (dir) => async (port, up, scenario) => {
  const cfg = path.join(work, `herald-${scenario}-${port}.yaml`);
  fs.writeFileSync(cfg, heraldConf(port, up, scenario));
  return start('taskset', [
    '-c',
    '0',
    process.execPath,
    path.join(dir, 'dist/bundle/main.js'),
    '-c',
    cfg,
    // One process, as these comparisons have always been run (bench/workers.mjs measures workers).
    '--concurrency',
    '1',
    '--drain-time-s',
    '1',
    '-l',
    'warning',
  ]);
};

const CANDIDATES = {
  herald: heraldAt(root),
  ...(args.baseline ? { 'herald-base': heraldAt(path.resolve(args.baseline)) } : {}),
  nginx: async (port, up, _scenario, h2Port) => {
    const cfg = path.join(work, `nginx-proxy-${port}.conf`);
    fs.writeFileSync(cfg, nginxConf('proxy', port, up, h2Port));
    return start('taskset', ['-c', '0', 'nginx', '-c', cfg, '-p', work]);
  },
  'node-http-proxy': async (port, up) =>
    start('taskset', [
      '-c',
      '0',
      process.execPath,
      path.join(here, 'node-http-proxy.mjs'),
      String(port),
      String(up),
    ]),
  'tcp-pipe': async (port, up) =>
    start('taskset', [
      '-c',
      '0',
      process.execPath,
      path.join(here, 'tcp-pipe.mjs'),
      String(port),
      String(up),
    ]),
};

// Which candidates make sense for which scenario.
const base = args.baseline ? ['herald-base'] : [];
const MATRIX = {
  h1: ['herald', ...base, 'nginx', 'node-http-proxy'],
  h1close: ['herald', ...base, 'nginx', 'node-http-proxy'],
  h2: ['herald', ...base, 'nginx'],
  tcp: ['herald', ...base, 'tcp-pipe'],
};

function parseWrk(out) {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const unit = (v, u) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  const lat = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    return m ? unit(m[1], m[2]) : 0;
  };
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0';
  const sockErr = /Socket errors: (.*)/.exec(out)?.[1] ?? '';
  return { rps, p50: lat('50'), p99: lat('99'), errors: Number(errors), sockErr };
}

function parseH2load(out) {
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  // "time for request:  min  max  mean  sd  +/- sd" – no percentiles; report mean.
  const m = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const unit = (v, u) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  return { rps, p50: m ? unit(m[5], m[6]) : 0, p99: m ? unit(m[3], m[4]) : 0, errors: failed, sockErr: '' };
}

function load(scenario, port, h2Port) {
  const d = `${DURATION}s`;
  if (scenario === 'h2') {
    const out = execFileSync(
      'taskset',
      ['-c', '1', 'h2load', '-c8', '-m8', '-D', String(DURATION), `http://127.0.0.1:${h2Port}/`],
      {
        encoding: 'utf8',
      },
    );
    return parseH2load(out);
  }
  const wrkArgs = ['-c', '1', 'wrk', '-t1', `-c${CONNS}`, `-d${d}`, '--latency'];
  if (scenario === 'h1close') wrkArgs.push('-H', 'Connection: close');
  wrkArgs.push(`http://127.0.0.1:${port}/`);
  return parseWrk(execFileSync('taskset', wrkArgs, { encoding: 'utf8' }));
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function main() {
  const upPort = await freePort();
  fs.writeFileSync(path.join(work, 'upstream.conf'), nginxConf('upstream', upPort));
  const upstream = start('taskset', ['-c', '1', 'nginx', '-c', path.join(work, 'upstream.conf'), '-p', work]);
  await waitPort(upPort);
  const only = args.only ? new Set(args.only.split(',')) : undefined;
  const scenarios = args.scenarios.split(',');
  const results = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of scenarios) {
      for (const name of MATRIX[scenario]) {
        if (only && !only.has(name)) continue;
        const port = await freePort();
        // nginx needs a separate h2c port; Herald (codec_type AUTO) sniffs h2c on its one port.
        const h2Port = name === 'nginx' ? await freePort() : port;
        const child = await CANDIDATES[name](port, upPort, scenario, h2Port);
        await waitPort(port);
        const pid = () => (name === 'nginx' ? nginxWorkerPid(child.pid) : child.pid);
        await new Promise((r) => setTimeout(r, 300));
        const early = rssKb(pid());
        await new Promise((r) => setTimeout(r, Math.max(0, IDLE_WAIT_MS - 300)));
        const idle = rssKb(pid());
        let r;
        try {
          load(scenario, port, h2Port); // warm-up, discarded (JIT, pools)
          r = load(scenario, port, h2Port);
        } catch (e) {
          r = { rps: 0, p50: 0, p99: 0, errors: -1, sockErr: String(e.message).slice(0, 200) };
        }
        const peak = rssKb(pid());
        // SIGTERM: nginx's master stops its workers too (SIGKILL would orphan them).
        child.kill('SIGTERM');
        await new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));
        const key = `${scenario}|${name}`;
        (results[key] ??= []).push({ ...r, early, idle, peak });
        process.stderr.write(
          `round ${round + 1} ${scenario} ${name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms errors ${r.errors} ${r.sockErr} rss ${early}/${idle}/${peak} KB (0.3 s/idle/loaded)\n`,
        );
      }
    }
  }
  upstream.kill('SIGTERM');
  await new Promise((res) => (upstream.exitCode !== null ? res() : upstream.once('exit', res)));
  const lines = [
    '| scenario | proxy | req/s | p50 ms | p99 ms | idle RSS MB | loaded RSS MB | errors | RSS at 0.3 s MB |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [key, runs] of Object.entries(results)) {
    const [scenario, name] = key.split('|');
    const m = (k) => median(runs.map((x) => x[k]));
    lines.push(
      `| ${scenario} | ${name} | ${m('rps').toFixed(0)} | ${m('p50').toFixed(2)} | ${m('p99').toFixed(2)} | ${(m('idle') / 1024).toFixed(1)} | ${(m('peak') / 1024).toFixed(1)} | ${runs.reduce((a, x) => a + x.errors, 0)} | ${(m('early') / 1024).toFixed(1)} |`,
    );
  }
  console.log(lines.join('\n'));
}

function nginxWorkerPid(masterPid) {
  // taskset execs nginx, so the child pid is the master; its worker is the child process.
  try {
    const out = execFileSync('pgrep', ['-P', String(masterPid)], { encoding: 'utf8' })
      .trim()
      .split('\n');
    return Number(out[0]) || masterPid;
  } catch {
    return masterPid;
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
