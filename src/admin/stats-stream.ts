// /stats/prometheus written in pieces, one metric family at a time: the same text as
// prometheusText() in src/stats/render.ts (test/admin/stats-stream.test.ts compares the
// two), without holding all of it in one string.
import { formatTags, prometheusName } from '../stats/render.js';
import type { Counter, Gauge, StatsStore, Tag } from '../stats/store.js';

interface Named {
  name: string;
  tagExtractedName: string;
  tags: readonly Tag[];
  used: boolean;
}

/** Groups by Prometheus name, each group and its members sorted, as Envoy orders them. */
function groups<T extends Named>(
  list: T[],
  usedOnly: boolean,
  filter: RegExp | undefined,
): Array<[string, T[]]> {
  const out = new Map<string, T[]>();
  for (const m of list) {
    if (usedOnly && !m.used) continue;
    if (filter && !filter.test(m.name)) continue;
    const n = prometheusName(m.tagExtractedName);
    let g = out.get(n);
    if (!g) out.set(n, (g = []));
    g.push(m);
  }
  const sorted = [...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [, g] of sorted) g.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return sorted;
}

/** /stats/prometheus: counters, then gauges, then histograms; one TYPE line per family. */
export function* prometheusLines(
  store: StatsStore,
  usedOnly: boolean,
  filter: RegExp | undefined,
): Generator<string, void, undefined> {
  function* numeric(list: Array<Counter | Gauge>, type: string): Generator<string, void, undefined> {
    for (const [name, members] of groups(list, usedOnly, filter)) {
      yield `# TYPE ${name} ${type}\n`;
      for (const m of members) yield `${name}{${formatTags(m.tags)}} ${m.value}\n`;
      yield '\n';
    }
  }
  yield* numeric(store.allCounters(), 'counter');
  yield* numeric(store.allGauges(), 'gauge');
  for (const [name, members] of groups(store.allHistograms(), usedOnly, filter)) {
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
