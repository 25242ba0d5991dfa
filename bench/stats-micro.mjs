#!/usr/bin/env node
// Per-operation cost of the stats hot path, in CPU time (process.cpuUsage, so
// other load on the machine slows the wall clock but not the figure much):
// a counter increment, a gauge inc/dec pair and a histogram recordValue, with
// the null objects stats_matcher reject_all gives for comparison.
//
//   npm run build && node bench/stats-micro.mjs
import { StatsStore } from '../dist/src/stats/store.js';

const N = 20_000_000;
function cpuNsPerOp(fn) {
  fn(N / 10); // warm-up (JIT)
  const t = process.cpuUsage();
  fn(N);
  const d = process.cpuUsage(t);
  return ((d.user + d.system) * 1000) / N;
}

function measure(store) {
  const c = store.counter('cluster.a.upstream_rq_total');
  const g = store.gauge('cluster.a.upstream_rq_active');
  const h = store.histogram('cluster.a.upstream_rq_time');
  return {
    'counter inc': cpuNsPerOp((n) => {
      for (let i = 0; i < n; i++) c.inc();
    }),
    'gauge inc+dec': cpuNsPerOp((n) => {
      for (let i = 0; i < n; i++) {
        g.inc();
        g.dec();
      }
    }),
    'histogram recordValue': cpuNsPerOp((n) => {
      for (let i = 0; i < n; i++) h.recordValue(i & 1023);
    }),
  };
}

const on = measure(new StatsStore());
const off = new StatsStore();
off.configure({ ...off.options, accept: () => false });
const rejected = measure(off);
console.log('| operation | ns/op (stats on) | ns/op (reject_all) |');
console.log('| --- | ---: | ---: |');
for (const k of Object.keys(on)) console.log(`| ${k} | ${on[k].toFixed(1)} | ${rejected[k].toFixed(1)} |`);
