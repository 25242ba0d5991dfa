import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const herald = path.join(root, 'bin/herald');
const corpus = path.resolve(root, '../shared/envoy-configs');

function run(args: string[], cwd = os.tmpdir()) {
  return spawnSync(herald, args, { cwd, encoding: 'utf8', timeout: 30000 });
}

function tmpFile(name: string, text: string): string {
  const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'herald-cli-')), name);
  fs.writeFileSync(p, text);
  return p;
}

const GOOD = `
static_resources:
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9 } } } }] }]
`;

describe('herald CLI', () => {
  it('prints its version and help from any folder', () => {
    const v = run(['--version']);
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^herald version: \d+\.\d+\.\d+/);
    const h = run(['--help']);
    assert.equal(h.status, 0);
    for (const flag of [
      '--config-path',
      '--config-yaml',
      '--mode',
      '--concurrency',
      '--log-level',
      '--component-log-level',
      '--drain-time-s',
      '--service-cluster',
      '--service-node',
      '--base-id',
    ])
      assert.ok(h.stdout.includes(flag), `--help lists ${flag}`);
  });

  it('rejects an unknown flag and a bad value with usage, exit 1', () => {
    const r = run(['--bogus']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Unknown option '--bogus'/);
    assert.equal(run(['--concurrency', 'two']).status, 1);
    assert.equal(run(['--mode', 'init_only', '-c', 'x']).status, 1);
    const c = run([
      '--mode',
      'validate',
      '-c',
      tmpFile('g.yaml', GOOD),
      '--component-log-level',
      'nosuch:debug',
    ]);
    assert.equal(c.status, 1);
    assert.match(c.stderr, /unknown logger component 'nosuch'/);
  });

  it('--mode validate prints OK and exits 0 for a good config', () => {
    const p = tmpFile('good.yaml', GOOD);
    const r = run(['--mode', 'validate', '-c', p]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `configuration '${p}' OK\n`);
  });

  it('--mode validate prints the error by path and exits 1, without a stack trace', () => {
    const p = tmpFile('bad.yaml', GOOD.replace('connect_timeout: 1s', 'connect_timeout: soon'));
    const r = run(['--mode', 'validate', '-c', p]);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /static_resources\.clusters\[0\]\.connect_timeout: expected a duration such as "1\.5s", got string "soon"/,
    );
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('--config-yaml alone, and merged over -c', () => {
    assert.equal(run(['--mode', 'validate', '--config-yaml', GOOD]).status, 0);
    const p = tmpFile('good.yaml', GOOD);
    const r = run([
      '--mode',
      'validate',
      '-c',
      p,
      '--config-yaml',
      'static_resources: { clusters: [{ name: a, connect_timeout: 1s }] }',
    ]);
    // Appending a second cluster named 'a' proves the overlay was merged (repeated fields append).
    assert.equal(r.status, 1);
    assert.match(r.stderr, /static_resources\.clusters\[1\]\.name: cluster 'a' is defined twice/);
  });

  it('serves a config from -c: listener and admin on ephemeral ports, answering over real sockets', async () => {
    const upstream = http.createServer((_q, s) => s.end('from-upstream'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as { port: number }).port;
    const cfg = tmpFile(
      'serve.yaml',
      `
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up} } } } }] }]
`,
    );
    const child = spawn(herald, ['-c', cfg, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const ports = await new Promise<{ listener: number; admin: number }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`herald did not start:\n${log}`)), 15000);
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        const l = /listener 'l' bound to 127\.0\.0\.1:(\d+)/.exec(log);
        const a = /admin address: 127\.0\.0\.1:(\d+)/.exec(log);
        if (l && a && /is live/.test(log)) {
          clearTimeout(t);
          resolve({ listener: Number(l[1]), admin: Number(a[1]) });
        }
      });
    });
    try {
      const body = await fetch(`http://127.0.0.1:${ports.listener}/x`).then((r) => r.text());
      assert.equal(body, 'from-upstream');
      const ready = await fetch(`http://127.0.0.1:${ports.admin}/ready`);
      assert.equal(ready.status, 200);
      assert.equal(await ready.text(), 'LIVE\n');
      // Log lines use Envoy's format: [date time.ms][thread][level][component] message
      assert.match(log, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\d+\]\[info\]\[main\] /m);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      upstream.close();
    }
  });
});

describe('herald CLI: graceful shutdown with workers', () => {
  it('SIGTERM: the request in flight finishes, new connections are refused, the process exits', async () => {
    const upstream = http.createServer((_q, s) => setTimeout(() => s.end('slow-done'), 700));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as { port: number }).port;
    const cfg = tmpFile(
      'drain.yaml',
      `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }] }
          http_filters: [{ name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  clusters:
  - name: a
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${up} } } } }] }]
`,
    );
    const child = spawn(herald, ['-c', cfg, '--concurrency', '2', '--drain-time-s', '10'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`herald did not start:\n${log}`)), 15000);
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        const l = /listener 'l' bound to 127\.0\.0\.1:(\d+)/.exec(log);
        if (l && /is live/.test(log)) {
          clearTimeout(t);
          resolve(Number(l[1]));
        }
      });
    });
    try {
      const inFlight = fetch(`http://127.0.0.1:${port}/slow`).then(async (r) => [r.status, await r.text()]);
      await new Promise((r) => setTimeout(r, 200));
      const exited = new Promise<number>((r) => child.once('exit', () => r(Date.now())));
      const signalled = Date.now();
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      await assert.rejects(fetch(`http://127.0.0.1:${port}/after`), 'no new connection after SIGTERM');
      assert.deepEqual(await inFlight, [200, 'slow-done']);
      const at = await exited;
      assert.ok(at - signalled < 5000, `exited ${at - signalled} ms after SIGTERM, once drained`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      upstream.close();
    }
  });
});

describe('the Envoy example corpus (../shared/envoy-configs)', () => {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name)) files.push(p);
    }
  };
  if (fs.existsSync(corpus)) walk(corpus);

  it('every file either validates OK or fails naming the first unsupported thing by path', {
    skip: files.length === 0 && 'corpus not present',
  }, () => {
    let ok = 0;
    const report: string[] = [];
    for (const f of files.sort()) {
      const r = run(['--mode', 'validate', '-c', f]);
      const rel = path.relative(corpus, f);
      assert.ok(r.status === 0 || r.status === 1, `${rel}: exit ${r.status} (signal ${r.signal})`);
      assert.doesNotMatch(r.stderr, /\n\s+at |unexpected error/, `${rel}: no stack trace`);
      if (r.status === 0) {
        assert.equal(r.stdout, `configuration '${f}' OK\n`);
        ok++;
        report.push(`OK   ${rel}`);
      } else {
        const first = r.stderr.split('\n')[1]?.trim() ?? '';
        // "<path>: <what is wrong>" with a dotted/indexed path, or a whole-file problem.
        assert.match(
          first,
          /^([a-z_]+(\[\d+\]|\["[^"]*"\])?)(\.[a-z_@]+(\[\d+\]|\["[^"]*"\])?)*: \S/,
          `${rel}: ${first}`,
        );
        report.push(`FAIL ${rel}: ${first}`);
      }
    }
    if (process.env.HERALD_CORPUS_REPORT)
      fs.writeFileSync(process.env.HERALD_CORPUS_REPORT, `${ok}/${files.length}\n${report.join('\n')}\n`);
    assert.ok(ok >= 20, `at least 20 corpus files load cleanly (got ${ok})`);
  });
});
