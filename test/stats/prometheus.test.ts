// /stats histograms, /stats/prometheus and bootstrap stats_config over real
// traffic: the Prometheus text is read back with a strict parser of the
// exposition format (0.0.4) and specific series are asserted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  httpBootstrap,
  type Running,
  request,
  startHerald,
  startUpstream,
  staticCluster,
  type Upstream,
} from '../helpers/harness.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format: every line is blank, a comment, or
 * `name{labels} value`; a family has exactly one TYPE line, before its samples; label values
 * are quoted with \\, \" and \n escapes; histogram samples end in _bucket/_sum/_count.
 */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const seenFamilies = new Set<string>();
  let current = '';
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (!m) {
        assert.match(line, /^# HELP /, `comment: ${line}`);
        continue;
      }
      assert.ok(!types.has(m[1]!), `one TYPE line for ${m[1]}`);
      assert.ok(!seenFamilies.has(m[1]!), `TYPE before samples of ${m[1]}`);
      types.set(m[1]!, m[2]!);
      current = m[1]!;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line: ${line}`);
    const [, name, rawLabels = '', rawValue] = m;
    const labels: Record<string, string> = {};
    let rest = rawLabels;
    while (rest.length) {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      assert.ok(l, `labels: ${rawLabels}`);
      assert.ok(!(l[1]! in labels), `label ${l[1]} once`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(l[0].length);
    }
    const family = types.get(name!) === undefined ? name!.replace(/_(bucket|sum|count)$/, '') : name!;
    assert.equal(family, current, `${name} belongs to the family typed just before it`);
    if (types.get(family) === 'histogram') assert.notEqual(family, name, `${name}: histogram sample suffix`);
    seenFamilies.add(family);
    const value = rawValue === '+Inf' ? Infinity : Number(rawValue);
    assert.ok(!Number.isNaN(value) || rawValue === 'NaN', `value of ${line}`);
    samples.push({ name: name!, labels, value });
  }
  return { samples, types };
}

function find(samples: Sample[], name: string, labels: Record<string, string>): Sample | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

describe('stats: histograms and /stats/prometheus', () => {
  let up: Upstream;
  let h: Running;
  before(async () => {
    up = await startUpstream('backend');
    h = await startHerald(
      `${httpBootstrap({
        routes: '- match: { prefix: / }\n  route: { cluster: backend }',
        clusters: staticCluster('backend', [up.port]),
      })}
stats_flush_on_admin: true
`,
    );
    for (let i = 0; i < 3; i++) assert.equal((await request(h.port(), { path: `/r${i}` })).status, 200);
  });
  after(async () => {
    await h.stop();
    await up.close();
  });
  const admin = (path: string, method = 'GET') => request(h.adminPort, { path, method });

  it('/stats prints upstream_rq_time quantiles; an idle interval reads nan', async () => {
    const first = await admin('/stats?filter=^cluster\\.backend\\.upstream_rq_time$');
    assert.match(
      first.body,
      /^cluster\.backend\.upstream_rq_time: P0\([\d.]+,[\d.]+\) P25\([\d.]+,[\d.]+\) P50\([\d.]+,[\d.]+\) P75\([\d.]+,[\d.]+\) P90\([\d.]+,[\d.]+\) P95\([\d.]+,[\d.]+\) P99\([\d.]+,[\d.]+\) P99\.5\([\d.]+,[\d.]+\) P99\.9\([\d.]+,[\d.]+\) P100\([\d.]+,[\d.]+\)\n$/,
    );
    // Each admin read flushes (stats_flush_on_admin): no requests since, so the interval is empty.
    const second = await admin('/stats?filter=^cluster\\.backend\\.upstream_rq_time$');
    assert.match(
      second.body,
      /^cluster\.backend\.upstream_rq_time: P0\(nan,[\d.]+\) .* P100\(nan,[\d.]+\)\n$/,
    );
  });

  it('/stats?format=json has Envoy\'s "histograms" entry', async () => {
    const j = JSON.parse(
      (await admin('/stats?format=json&filter=upstream_rq_time|downstream_rq_time')).body,
    ) as {
      stats: Array<{
        histograms?: {
          supported_quantiles: number[];
          computed_quantiles: Array<{
            name: string;
            values: Array<{ interval: number | null; cumulative: number | null }>;
          }>;
        };
      }>;
    };
    const hist = j.stats.find((s) => s.histograms)?.histograms;
    assert.ok(hist);
    assert.deepEqual(hist.supported_quantiles, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
    assert.deepEqual(
      hist.computed_quantiles.map((c) => c.name),
      ['cluster.backend.upstream_rq_time', 'http.test.downstream_rq_time'],
    );
    for (const c of hist.computed_quantiles) {
      assert.equal(c.values.length, 10);
      for (const v of c.values) assert.equal(typeof v.cumulative, 'number');
    }
    const b = JSON.parse(
      (await admin('/stats?format=json&histogram_buckets=cumulative&filter=upstream_rq_time')).body,
    ) as {
      stats: Array<{
        histograms?: Array<{ name: string; buckets: Array<{ upper_bound: number; cumulative: number }> }>;
      }>;
    };
    const rq = b.stats.find((s) => s.histograms)?.histograms?.[0];
    assert.equal(rq?.name, 'cluster.backend.upstream_rq_time');
    assert.equal(rq?.buckets.at(-1)?.upper_bound, 3600000);
    assert.equal(rq?.buckets.at(-1)?.cumulative, 3);
  });

  it('/stats?histogram_buckets=cumulative text and ?type=Histograms', async () => {
    const r = await admin('/stats?type=Histograms&histogram_buckets=cumulative&filter=upstream_rq_time');
    assert.match(
      r.body,
      /^cluster\.backend\.upstream_rq_time: B0\.5\(0,\d\) B1\(0,\d\) .* B3\.6e\+06\(0,3\)\n$/,
    );
    const counters = await admin('/stats?type=Counters&filter=^cluster\\.backend\\.');
    assert.doesNotMatch(counters.body, /upstream_rq_time:|membership_total/);
    assert.match(counters.body, /^cluster\.backend\.upstream_rq_total: 3$/m);
  });

  it('/stats/prometheus parses strictly and carries tagged series', async () => {
    const r = await admin('/stats/prometheus');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const { samples, types } = parsePrometheus(r.body);
    assert.equal(types.get('envoy_cluster_upstream_rq_total'), 'counter');
    assert.equal(
      find(samples, 'envoy_cluster_upstream_rq_total', { envoy_cluster_name: 'backend' })?.value,
      3,
    );
    assert.equal(
      find(samples, 'envoy_cluster_upstream_rq', {
        envoy_response_code: '200',
        envoy_cluster_name: 'backend',
      })?.value,
      3,
    );
    assert.equal(
      find(samples, 'envoy_http_downstream_rq_xx', {
        envoy_response_code_class: '2',
        envoy_http_conn_manager_prefix: 'test',
      })?.value,
      3,
    );
    assert.equal(types.get('envoy_cluster_membership_total'), 'gauge');
    assert.equal(
      find(samples, 'envoy_cluster_membership_total', { envoy_cluster_name: 'backend' })?.value,
      1,
    );
    assert.equal(
      find(samples, 'envoy_listener_downstream_cx_total', { envoy_listener_address: `127.0.0.1_${h.port()}` })
        ?.value,
      3,
    );
    assert.equal(find(samples, 'envoy_server_live', {})?.value, 1);
    // Histograms: buckets, +Inf, _sum and _count, with the cluster tag.
    assert.equal(types.get('envoy_cluster_upstream_rq_time'), 'histogram');
    const tag = { envoy_cluster_name: 'backend' };
    assert.equal(find(samples, 'envoy_cluster_upstream_rq_time_count', tag)?.value, 3);
    assert.equal(find(samples, 'envoy_cluster_upstream_rq_time_bucket', { ...tag, le: '+Inf' })?.value, 3);
    assert.equal(find(samples, 'envoy_cluster_upstream_rq_time_bucket', { ...tag, le: '3600000' })?.value, 3);
    const buckets = samples.filter((s) => s.name === 'envoy_cluster_upstream_rq_time_bucket');
    assert.equal(buckets.length, 20);
    for (let i = 1; i < buckets.length; i++)
      assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'cumulative');
    assert.ok((find(samples, 'envoy_cluster_upstream_rq_time_sum', tag)?.value ?? -1) >= 0);
    assert.equal(
      find(samples, 'envoy_http_downstream_rq_time_count', { envoy_http_conn_manager_prefix: 'test' })?.value,
      3,
    );
    assert.equal(
      find(samples, 'envoy_listener_downstream_cx_length_ms_count', {
        envoy_listener_address: `127.0.0.1_${h.port()}`,
      })?.value,
      3,
    );
  });

  it('/stats/prometheus?usedonly&filter= narrows the output', async () => {
    const r = await admin('/stats/prometheus?usedonly&filter=^cluster\\.backend\\.upstream_');
    const { samples, types } = parsePrometheus(r.body);
    assert.ok(samples.length > 0);
    for (const s of samples) assert.match(s.name, /^envoy_cluster_upstream_/);
    // Never incremented: left out with usedonly.
    assert.equal(types.has('envoy_cluster_upstream_rq_timeout'), false);
    assert.equal(types.has('envoy_cluster_upstream_rq_total'), true);
  });
});

describe('stats_config', () => {
  let up: Upstream;
  before(async () => {
    up = await startUpstream('backend');
  });
  after(async () => {
    await up.close();
  });
  const boot = (extra: string) =>
    `${httpBootstrap({
      routes: '- match: { prefix: / }\n  route: { cluster: backend }',
      clusters: staticCluster('backend', [up.port]),
    })}
stats_flush_on_admin: true
${extra}`;

  it('custom stats_tags (regex and fixed_value) without the default tags', async () => {
    const h = await startHerald(
      boot(`stats_config:
  use_all_default_tags: false
  stats_tags:
  - tag_name: cluster
    regex: "^cluster\\\\.((.+?)\\\\.)"
  - tag_name: mesh
    fixed_value: blue`),
    );
    try {
      await request(h.port());
      const { samples } = parsePrometheus((await request(h.adminPort, { path: '/stats/prometheus' })).body);
      assert.equal(
        find(samples, 'envoy_cluster_upstream_rq_total', { mesh: 'blue', cluster: 'backend' })?.value,
        1,
      );
      // No default extractor: the response code stays in the name.
      assert.equal(
        find(samples, 'envoy_cluster_upstream_rq_200', { mesh: 'blue', cluster: 'backend' })?.value,
        1,
      );
      assert.equal(find(samples, 'envoy_http_test_downstream_rq_total', { mesh: 'blue' })?.value, 1);
    } finally {
      await h.stop();
    }
  });

  it('stats_matcher inclusion_list keeps only matching stats; histogram_bucket_settings sets buckets', async () => {
    const h = await startHerald(
      boot(`stats_config:
  stats_matcher:
    inclusion_list:
      patterns:
      - prefix: "cluster.backend.upstream_rq_"
  histogram_bucket_settings:
  - match: { suffix: upstream_rq_time }
    buckets: [100000, 1]`),
    );
    try {
      await request(h.port());
      await request(h.port());
      const text = (await request(h.adminPort, { path: '/stats' })).body;
      for (const line of text.trimEnd().split('\n'))
        assert.match(line, /^cluster\.backend\.upstream_rq_/, line);
      assert.match(text, /^cluster\.backend\.upstream_rq_total: 2$/m);
      const { samples } = parsePrometheus((await request(h.adminPort, { path: '/stats/prometheus' })).body);
      const les = samples
        .filter((s) => s.name === 'envoy_cluster_upstream_rq_time_bucket')
        .map((s) => s.labels.le);
      assert.deepEqual(les, ['1', '100000', '+Inf']);
      assert.equal(
        find(samples, 'envoy_cluster_upstream_rq_time_bucket', {
          envoy_cluster_name: 'backend',
          le: '100000',
        })?.value,
        2,
      );
    } finally {
      await h.stop();
    }
  });

  it('stats_matcher exclusion_list and reject_all', async () => {
    const h = await startHerald(
      boot(`stats_config:
  stats_matcher:
    exclusion_list:
      patterns:
      - safe_regex: { regex: "^http\\\\..*" }
      - prefix: "listener."`),
    );
    try {
      await request(h.port());
      const text = (await request(h.adminPort, { path: '/stats' })).body;
      assert.doesNotMatch(text, /^(http|listener)\./m);
      assert.match(text, /^cluster\.backend\.upstream_rq_total: 1$/m);
    } finally {
      await h.stop();
    }
    const none = await startHerald(boot('stats_config: { stats_matcher: { reject_all: true } }'));
    try {
      assert.equal((await request(none.port())).status, 200);
      assert.equal((await request(none.adminPort, { path: '/stats' })).body, '');
      assert.equal((await request(none.adminPort, { path: '/stats/prometheus' })).body, '');
    } finally {
      await none.stop();
    }
  });

  it('rejects a tag named twice, and a tag with no regex and no default', async () => {
    await assert.rejects(
      startHerald(
        boot(
          'stats_config: { stats_tags: [{ tag_name: a, fixed_value: x }, { tag_name: a, fixed_value: y }] }',
        ),
      ),
      /stats_config\.stats_tags\[1\]\.tag_name: Tag name 'a' specified twice\./,
    );
    await assert.rejects(
      startHerald(boot('stats_config: { stats_tags: [{ tag_name: mine }] }')),
      /No regex specified for tag specifier and no default regex for name: 'mine'/,
    );
  });
});
