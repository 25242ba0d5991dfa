// /stats/prometheus written in pieces, one metric family at a time: the same text as
// prometheusText() in src/stats/render.ts (test/admin/stats-stream.test.ts compares the
// two), without holding all of it in one string.
import { formatTags, prometheusGroups } from '../stats/render.js';
import type { Counter, Gauge, StatsStore } from '../stats/store.js';

/** /stats/prometheus: counters, then gauges, then histograms; one TYPE line per family. */
export function* prometheusLines(
  store: StatsStore,
  usedOnly: boolean,
  filter: RegExp | undefined,
): Generator<string, void, undefined> {
  function* numeric(list: Array<Counter | Gauge>, type: string): Generator<string, void, undefined> {
    for (const [name, members] of prometheusGroups(list, usedOnly, filter)) {
      yield `# TYPE ${name} ${type}\n`;
      for (const m of members) yield `${name}{${formatTags(m.tags)}} ${m.value}\n`;
      yield '\n';
    }
  }
  yield* numeric(store.allCounters(), 'counter');
  yield* numeric(store.allGauges(), 'gauge');
  for (const [name, members] of prometheusGroups(store.allHistograms(), usedOnly, filter)) {
    yield `# TYPE ${name} histogram\n`;
    for (const h of members) {
      const tags = formatTags(h.tags);
      const lead = tags ? `${tags},` : '';
      const s = h.cumulativeStatistics;
      let lines = '';
      h.supportedBuckets.forEach((bound, i) => {
        lines += `${name}_bucket{${lead}le="${bound}"} ${s.buckets[i]}\n`;
      });
      lines += `${name}_bucket{${lead}le="+Inf"} ${s.sampleCount}\n`;
      lines += `${name}_sum{${tags}} ${s.sampleSum}\n`;
      lines += `${name}_count{${tags}} ${s.sampleCount}\n`;
      yield lines;
    }
    yield '\n';
  }
}
