// Stats as the admin API prints them: Envoy's /stats text and JSON shapes for
// histograms (source/server/admin/stats_render.cc) and the Prometheus text
// exposition format 0.0.4 (source/server/admin/prometheus_stats.cc).
import { formatDouble, formatG, type Histogram, SUPPORTED_QUANTILES } from './histogram.js';
import type { Counter, Gauge, StatsStore, Tag } from './store.js';

export type BucketsMode = 'none' | 'cumulative' | 'disjoint';

function disjoint(cumulative: number[]): number[] {
  return cumulative.map((c, i) => c - (i > 0 ? cumulative[i - 1]! : 0));
}

/** One `/stats` text line: `name: P0(interval,cumulative) P25(...) ...`, or the bucket form. */
export function histogramText(h: Histogram, mode: BucketsMode): string {
  if (!h.used) return `${h.name}: No recorded values\n`;
  const iv = h.intervalStatistics;
  const cu = h.cumulativeStatistics;
  const parts: string[] = [];
  if (mode === 'none') {
    for (let i = 0; i < SUPPORTED_QUANTILES.length; i++)
      parts.push(
        `P${formatG(SUPPORTED_QUANTILES[i]! * 100)}(${formatDouble(iv.quantiles[i]!)},${formatDouble(cu.quantiles[i]!)})`,
      );
  } else {
    const a = mode === 'disjoint' ? disjoint(iv.buckets) : iv.buckets;
    const b = mode === 'disjoint' ? disjoint(cu.buckets) : cu.buckets;
    h.supportedBuckets.forEach((bound, i) => {
      parts.push(`B${formatG(bound)}(${a[i]},${b[i]})`);
    });
  }
  return `${h.name}: ${parts.join(' ')}\n`;
}

/** JSON numbers as Envoy's streamer writes them: NaN is null. */
function num(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

/** The `{"histograms": ...}` entry of /stats?format=json. */
export function histogramsJson(list: Histogram[], mode: BucketsMode): unknown {
  if (mode === 'none') {
    return {
      histograms: {
        supported_quantiles: SUPPORTED_QUANTILES.map((q) => q * 100),
        computed_quantiles: list.map((h) => ({
          name: h.name,
          values: SUPPORTED_QUANTILES.map((_q, i) => ({
            cumulative: num(h.cumulativeStatistics.quantiles[i]!),
            interval: num(h.intervalStatistics.quantiles[i]!),
          })),
        })),
      },
    };
  }
  return {
    histograms: list.map((h) => {
      const iv = mode === 'disjoint' ? disjoint(h.intervalStatistics.buckets) : h.intervalStatistics.buckets;
      const cu =
        mode === 'disjoint' ? disjoint(h.cumulativeStatistics.buckets) : h.cumulativeStatistics.buckets;
      return {
        name: h.name,
        buckets: h.supportedBuckets.map((upper_bound, i) => ({
          upper_bound,
          interval: iv[i],
          cumulative: cu[i],
        })),
      };
    }),
  };
}

/** Prometheus names: `envoy_` + the tag-extracted name with every character outside [a-zA-Z0-9_] as `_`. */
export function prometheusName(tagExtractedName: string): string {
  return `envoy_${tagExtractedName.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Prometheus labels from stat tags: `name="value"`, comma-separated. */
export function formatTags(tags: readonly Tag[]): string {
  return tags.map((t) => `${t.name.replace(/[^a-zA-Z0-9_]/g, '_')}="${escapeLabelValue(t.value)}"`).join(',');
}

export interface Named {
  name: string;
  tagExtractedName: string;
  tags: readonly Tag[];
  used: boolean;
}

/** Groups by Prometheus name, each group and its members sorted, as Envoy orders them. */
export function prometheusGroups<T extends Named>(
  list: T[],
  usedOnly: boolean,
  filter: RegExp | undefined,
): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const m of list) {
    if (usedOnly && !m.used) continue;
    if (filter && !filter.test(m.name)) continue;
    const n = prometheusName(m.tagExtractedName);
    let g = out.get(n);
    if (!g) out.set(n, (g = []));
    g.push(m);
  }
  const sorted = new Map([...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  for (const g of sorted.values()) g.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return sorted;
}

/** /stats/prometheus: counters, then gauges, then histograms; one TYPE line per family. */
export function prometheusText(store: StatsStore, usedOnly: boolean, filter: RegExp | undefined): string {
  const out: string[] = [];
  const numeric = (list: Array<Counter | Gauge>, type: string) => {
    for (const [name, members] of prometheusGroups(list, usedOnly, filter)) {
      out.push(`# TYPE ${name} ${type}\n`);
      for (const m of members) out.push(`${name}{${formatTags(m.tags)}} ${m.value}\n`);
      out.push('\n');
    }
  };
  numeric(store.allCounters(), 'counter');
  numeric(store.allGauges(), 'gauge');
  for (const [name, members] of prometheusGroups(store.allHistograms(), usedOnly, filter)) {
    out.push(`# TYPE ${name} histogram\n`);
    for (const h of members) {
      const tags = formatTags(h.tags);
      const lead = tags ? `${tags},` : '';
      const s = h.cumulativeStatistics;
      h.supportedBuckets.forEach((bound, i) => {
        out.push(`${name}_bucket{${lead}le="${bound}"} ${s.buckets[i]}\n`);
      });
      out.push(`${name}_bucket{${lead}le="+Inf"} ${s.sampleCount}\n`);
      out.push(`${name}_sum{${tags}} ${s.sampleSum}\n`);
      out.push(`${name}_count{${tags}} ${s.sampleCount}\n`);
    }
    out.push('\n');
  }
  return out.join('');
}
