// Histogram summaries against the exact text Envoy's own render tests expect
// (test/server/admin/stats_render_test.cc: values 200, 300, 300).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram } from '../../src/stats/histogram.js';
import { histogramText } from '../../src/stats/render.js';
import { TagProducer } from '../../src/stats/tag-extractor.js';

function h1(values: number[]): Histogram {
  const h = new Histogram('h1', 'h1', []);
  for (const v of values) h.recordValue(v);
  h.merge();
  return h;
}

describe('histogram summaries', () => {
  it('quantiles as Envoy prints them: P<q>(interval,cumulative)', () => {
    assert.equal(
      histogramText(h1([200, 300, 300]), 'none'),
      'h1: P0(200,200) P25(207.5,207.5) P50(302.5,302.5) P75(306.25,306.25) ' +
        'P90(308.5,308.5) P95(309.25,309.25) P99(309.85,309.85) P99.5(309.925,309.925) ' +
        'P99.9(309.985,309.985) P100(310,310)\n',
    );
  });

  it('cumulative and disjoint buckets, with %g bounds (B1.8e+06)', () => {
    assert.equal(
      histogramText(h1([200, 300, 300]), 'cumulative'),
      'h1: B0.5(0,0) B1(0,0) B5(0,0) B10(0,0) B25(0,0) B50(0,0) B100(0,0) B250(1,1) ' +
        'B500(3,3) B1000(3,3) B2500(3,3) B5000(3,3) B10000(3,3) B30000(3,3) B60000(3,3) ' +
        'B300000(3,3) B600000(3,3) B1.8e+06(3,3) B3.6e+06(3,3)\n',
    );
    assert.equal(
      histogramText(h1([200, 300, 300]), 'disjoint'),
      'h1: B0.5(0,0) B1(0,0) B5(0,0) B10(0,0) B25(0,0) B50(0,0) B100(0,0) B250(1,1) ' +
        'B500(2,2) B1000(0,0) B2500(0,0) B5000(0,0) B10000(0,0) B30000(0,0) B60000(0,0) ' +
        'B300000(0,0) B600000(0,0) B1.8e+06(0,0) B3.6e+06(0,0)\n',
    );
  });

  it('an idle interval is nan while the cumulative side keeps its values', () => {
    const h = h1([1]);
    assert.match(histogramText(h, 'none'), /^h1: P0\(1,1\) P25\(1\.025,1\.025\) P50\(1\.05,1\.05\)/);
    h.merge();
    assert.match(histogramText(h, 'none'), /^h1: P0\(nan,1\) P25\(nan,1\.025\) .* P100\(nan,1\.1\)\n$/);
    h.recordValue(0);
    h.merge();
    assert.match(histogramText(h, 'none'), /^h1: P0\(0,0\) /);
    assert.equal(h.cumulativeStatistics.sampleCount, 2);
  });

  it('no values yet: "No recorded values"', () => {
    const h = new Histogram('h2', 'h2', []);
    h.merge();
    assert.equal(histogramText(h, 'none'), 'h2: No recorded values\n');
  });
});

describe('default tag extraction', () => {
  const p = TagProducer.defaults();
  const cases: Array<[string, string, Array<[string, string]>]> = [
    ['cluster.backend.upstream_rq_total', 'cluster.upstream_rq_total', [['envoy.cluster_name', 'backend']]],
    [
      'cluster.backend.upstream_rq_200',
      'cluster.upstream_rq',
      [
        ['envoy.response_code', '200'],
        ['envoy.cluster_name', 'backend'],
      ],
    ],
    [
      'http.ingress.downstream_rq_5xx',
      'http.downstream_rq_xx',
      [
        ['envoy.response_code_class', '5'],
        ['envoy.http_conn_manager_prefix', 'ingress'],
      ],
    ],
    [
      'listener.127.0.0.1_10000.downstream_cx_total',
      'listener.downstream_cx_total',
      [['envoy.listener_address', '127.0.0.1_10000']],
    ],
    [
      'listener.[__1]_8080.http.ingress.downstream_rq_total',
      'listener.http.downstream_rq_total',
      [
        ['envoy.http_conn_manager_prefix', 'ingress'],
        ['envoy.listener_address', '[__1]_8080'],
      ],
    ],
    ['listener.admin.downstream_cx_total', 'listener.admin.downstream_cx_total', []],
    ['tcp.db.downstream_cx_total', 'tcp.downstream_cx_total', [['envoy.tcp_prefix', 'db']]],
    ['listener_manager.worker_3.x', 'listener_manager.worker_x', [['envoy.worker_id', '3']]],
    ['server.uptime', 'server.uptime', []],
  ];
  for (const [name, extracted, tags] of cases) {
    it(name, () => {
      const r = p.produce(name);
      assert.equal(r.tagExtractedName, extracted);
      assert.deepEqual(
        r.tags.map((t) => [t.name, t.value]),
        tags,
      );
    });
  }
});
