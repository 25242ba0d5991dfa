// HCM access logs to a file: Envoy's default format, a text format and a JSON
// format, with response flags and durations, written after real traffic.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
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

describe('access logs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-al-'));
  const dflt = path.join(dir, 'default.log');
  const txt = path.join(dir, 'text.log');
  const js = path.join(dir, 'json.log');
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('hello');
    h = await startHerald(
      httpBootstrap({
        hcmExtra: `access_log:
- name: envoy.access_loggers.file
  typed_config: { "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: ${dflt} }
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${txt}
    log_format: { text_format_source: { inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %REQ(:PATH)% %RESPONSE_CODE_DETAILS%\\n" } }
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${js}
    log_format: { json_format: { status: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", method: "%REQ(:METHOD)%", host: "%UPSTREAM_HOST%" }, omit_empty_values: true }`,
        routes: `- match: { prefix: /ok }
  route: { cluster: up }
- match: { prefix: /dead }
  route: { cluster: dead }`,
        clusters: `${staticCluster('up', [up.port])}
${staticCluster('dead', [1])}`,
      }),
    );
    await request(h.port(), {
      path: '/ok',
      headers: { 'user-agent': 'test-agent', 'x-request-id': 'rid-1' },
    });
    await request(h.port(), { path: '/dead' });
    await request(h.port(), { path: '/nowhere' });
  });
  after(async () => {
    await h.stop();
    await up.close();
  });

  it("writes Envoy's default format", async () => {
    const [ok] = await lines(dflt, 3);
    assert.match(
      ok!,
      /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET \/ok HTTP\/1\.1" 200 - 0 5 \d+ \d+ "-" "test-agent" "rid-1" "127\.0\.0\.1:\d+" "127\.0\.0\.1:\d+"$/,
    );
  });

  it('writes a text format with response flags and details', async () => {
    const got = await lines(txt, 3);
    assert.deepEqual(got, [
      '200 - up /ok via_upstream',
      '503 UF dead /dead upstream_reset_before_response_started{connection_failure}',
      '404 NR - /nowhere route_not_found',
    ]);
  });

  it('writes JSON, numbers typed and empty values omitted', async () => {
    const got = (await lines(js, 3)).map((l) => JSON.parse(l));
    assert.equal(got[0].status, 200);
    assert.equal(got[0].method, 'GET');
    assert.match(got[0].host, /^127\.0\.0\.1:\d+$/);
    assert.equal(got[1].flags, 'UF');
    assert.equal(got[2].flags, 'NR');
    assert.equal('host' in got[2], false);
  });
});

describe('access log rotation', () => {
  it('POST /reopen_logs starts writing to a fresh file after the old one was moved away', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-rot-'));
    const file = path.join(dir, 'access.log');
    const up = await startUpstream('x');
    const h = await startHerald(
      httpBootstrap({
        hcmExtra: `access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${file}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)%\\n" } }`,
        routes: '- match: { prefix: / }\n  route: { cluster: up }',
        clusters: staticCluster('up', [up.port]),
      }),
    );
    try {
      await request(h.port(), { path: '/before' });
      assert.deepEqual(await lines(file, 1), ['/before']);
      fs.renameSync(file, `${file}.1`);
      assert.equal((await request(h.adminPort, { path: '/reopen_logs', method: 'POST' })).status, 200);
      await request(h.port(), { path: '/after' });
      assert.deepEqual(await lines(file, 1), ['/after']);
      assert.deepEqual(fs.readFileSync(`${file}.1`, 'utf8'), '/before\n');
    } finally {
      await h.stop();
      await up.close();
    }
  });
});

describe('tcp_proxy access log', () => {
  it('logs one line per connection with bytes, upstream and flags', async () => {
    const net = await import('node:net');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-tcpal-'));
    const file = path.join(dir, 'tcp.log');
    const echo = net.createServer((s) => s.on('data', (d) => s.write(d)).on('end', () => s.end()));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const echoPort = (echo.address() as { port: number }).port;
    const tcp = (name: string, cluster: string, attempts = 1) => `
  - name: ${name}
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: ${name}
          cluster: ${cluster}
          max_connect_attempts: ${attempts}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${file}
              log_format: { text_format_source: { inline_string: "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\\n" } }`;
    const h = await startHerald(`
static_resources:
  listeners:${tcp('good', 'echo')}${tcp('bad', 'dead', 2)}
  clusters:
${indent(staticCluster('echo', [echoPort]), 2)}
${indent(staticCluster('dead', [1]), 2)}
`);
    try {
      await new Promise<void>((resolve) => {
        const s = net.connect(h.port('good'), '127.0.0.1', () => s.end('hello'));
        s.on('data', () => {});
        s.on('close', () => resolve());
      });
      await new Promise<void>((resolve) => {
        const s = net.connect(h.port('bad'), '127.0.0.1');
        s.on('error', () => {});
        s.on('close', () => resolve());
      });
      const got = await lines(file, 2);
      assert.deepEqual(got.sort(), ['dead 0 0 UF,URX 2', 'echo 5 5 - 1']);
    } finally {
      await h.stop();
      echo.close();
    }
  });
});

describe('access log filters', () => {
  it('status_code, response_flag, header and or/and filters select the entries', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-alf-'));
    const errors = path.join(dir, 'errors.log');
    const flagged = path.join(dir, 'flagged.log');
    const combo = path.join(dir, 'combo.log');
    const up = await startUpstream('x');
    const logger = (file: string, filter: string) => `
- name: envoy.access_loggers.file
  filter: ${filter}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ${file}
    log_format: { text_format_source: { inline_string: "%REQ(:PATH)% %RESPONSE_CODE%\\n" } }`;
    const h = await startHerald(
      httpBootstrap({
        hcmExtra: `access_log:${logger(errors, '{ status_code_filter: { comparison: { op: GE, value: { default_value: 400, runtime_key: k } } } }')}${logger(
          flagged,
          '{ response_flag_filter: { flags: [UF, NR] } }',
        )}${logger(
          combo,
          '{ or_filter: { filters: [ { header_filter: { header: { name: x-debug, present_match: true } } }, { and_filter: { filters: [ { status_code_filter: { comparison: { op: EQ, value: { default_value: 200, runtime_key: k } } } }, { header_filter: { header: { name: x-tag, string_match: { exact: keep } } } } ] } } ] } }',
        )}`,
        routes: `- match: { prefix: /ok }
  route: { cluster: up }
- match: { prefix: /dead }
  route: { cluster: dead }`,
        clusters: `${staticCluster('up', [up.port])}
${staticCluster('dead', [1])}`,
      }),
    );
    try {
      await request(h.port(), { path: '/ok/plain' });
      await request(h.port(), { path: '/ok/tagged', headers: { 'x-tag': 'keep' } });
      await request(h.port(), { path: '/dead', headers: { 'x-debug': '1' } });
      await request(h.port(), { path: '/nowhere' });
      assert.deepEqual(await lines(errors, 2), ['/dead 503', '/nowhere 404']);
      assert.deepEqual(await lines(flagged, 2), ['/dead 503', '/nowhere 404']);
      assert.deepEqual(await lines(combo, 2), ['/ok/tagged 200', '/dead 503']);
    } finally {
      await h.stop();
      await up.close();
    }
  });
});
