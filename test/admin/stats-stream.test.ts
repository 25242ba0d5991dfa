// /stats/prometheus in pieces is the text prometheusText() writes in one string.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { prometheusLines } from '../../src/admin/stats-stream.js';
import { prometheusText } from '../../src/stats/render.js';
import { StatsStore } from '../../src/stats/store.js';

describe('prometheusLines', () => {
  it('writes what prometheusText writes, with and without filter and usedonly', () => {
    const store = new StatsStore();
    for (const c of ['backend', 'web.api', 'quote"d']) {
      const s = store.scope(`cluster.${c}.`);
      s.counter('upstream_rq_total').inc(3);
      s.counter('upstream_cx_total');
      s.gauge('upstream_cx_active').set(2);
      s.histogram('upstream_rq_time').recordValue(12);
      s.histogram('upstream_cx_length_ms');
    }
    store.counter('http.ingress.downstream_rq_2xx').inc();
    store.gauge('server.live').set(1);
    store.counter('listener.127.0.0.1_10000.downstream_cx_total').inc(7);
    store.flush();
    for (const [usedOnly, filter] of [
      [false, undefined],
      [true, undefined],
      [false, /cluster\.backend/],
      [true, /upstream_rq/],
      [false, /nothing/],
    ] as const) {
      assert.equal(
        [...prometheusLines(store, usedOnly, filter)].join(''),
        prometheusText(store, usedOnly, filter),
        `usedonly=${usedOnly} filter=${filter}`,
      );
    }
  });
});
