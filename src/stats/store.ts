// Stats with Envoy's names. Counters, gauges and histograms are objects created
// once (when a cluster, listener or HCM is built) and bumped on the hot path
// with no string building. Tag extraction and the stats_matcher run once, when
// a stat is created; a stat the matcher rejects is a null object that is
// neither stored nor exported.
import { DEFAULT_BUCKETS, Histogram, NullHistogram, type Tag } from './histogram.js';
import { TagProducer } from './tag-extractor.js';

export type { Tag } from './histogram.js';

export class Counter {
  value = 0;
  /** Written since start (Envoy's `used`, for ?usedonly); reset_counters keeps it. */
  used = false;
  constructor(
    readonly name: string,
    readonly tagExtractedName: string,
    readonly tags: readonly Tag[],
  ) {}
  inc(n = 1): void {
    this.value += n;
    this.used = true;
  }
  reset(): void {
    this.value = 0;
  }
}

export class Gauge {
  value = 0;
  used = false;
  constructor(
    readonly name: string,
    readonly tagExtractedName: string,
    readonly tags: readonly Tag[],
  ) {}
  inc(n = 1): void {
    this.value += n;
    this.used = true;
  }
  dec(n = 1): void {
    this.value -= n;
    this.used = true;
  }
  set(v: number): void {
    this.value = v;
    this.used = true;
  }
}

class NullCounter extends Counter {
  override inc(_n = 1): void {}
}

class NullGauge extends Gauge {
  override inc(_n = 1): void {}
  override dec(_n = 1): void {}
  override set(_v: number): void {}
}

/** What bootstrap stats_config (and the flush settings) select. */
export interface StatsOptions {
  tagProducer: TagProducer;
  /** stats_matcher: whether a stat of this name is kept. */
  accept: (name: string) => boolean;
  /** histogram_bucket_settings: the first rule whose matcher accepts the name gives its buckets. */
  bucketRules: Array<{ match: (name: string) => boolean; buckets: number[] }>;
  /** stats_flush_interval (default 5 s). */
  flushIntervalMs: number;
  /** stats_flush_on_admin: no timer; each admin stats read flushes. */
  flushOnAdmin: boolean;
}

export function defaultStatsOptions(): StatsOptions {
  return {
    tagProducer: TagProducer.defaults(),
    accept: () => true,
    bucketRules: [],
    flushIntervalMs: 5000,
    flushOnAdmin: false,
  };
}

export class StatsStore {
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();
  private readonly histograms = new Map<string, Histogram>();
  options: StatsOptions = defaultStatsOptions();
  private readonly flushCallbacks: Array<() => void> = [];

  /** Applies stats_config; done before any stat is created. */
  configure(options: StatsOptions): void {
    this.options = options;
  }

  counter(name: string): Counter {
    let c = this.counters.get(name);
    if (c) return c;
    if (!this.options.accept(name)) return new NullCounter(name, name, []);
    const t = this.options.tagProducer.produce(name);
    this.counters.set(name, (c = new Counter(name, t.tagExtractedName, t.tags)));
    return c;
  }

  gauge(name: string): Gauge {
    let g = this.gauges.get(name);
    if (g) return g;
    if (!this.options.accept(name)) return new NullGauge(name, name, []);
    const t = this.options.tagProducer.produce(name);
    this.gauges.set(name, (g = new Gauge(name, t.tagExtractedName, t.tags)));
    return g;
  }

  histogram(name: string): Histogram {
    let h = this.histograms.get(name);
    if (h) return h;
    if (!this.options.accept(name)) return new NullHistogram(name, name, []);
    const t = this.options.tagProducer.produce(name);
    const rule = this.options.bucketRules.find((r) => r.match(name));
    h = new Histogram(name, t.tagExtractedName, t.tags, rule?.buckets ?? DEFAULT_BUCKETS);
    this.histograms.set(name, h);
    return h;
  }

  /** A scope that prefixes names, e.g. `cluster.backend.`. */
  scope(prefix: string): StatsScope {
    return new StatsScope(this, prefix);
  }

  allCounters(): Counter[] {
    return [...this.counters.values()];
  }

  allGauges(): Gauge[] {
    return [...this.gauges.values()];
  }

  allHistograms(): Histogram[] {
    return [...this.histograms.values()];
  }

  /** Runs before each flush (server stats are refreshed here). */
  onFlush(cb: () => void): void {
    this.flushCallbacks.push(cb);
  }

  /** Envoy's stats flush: refresh flushed gauges, merge histogram intervals. */
  flush(): void {
    for (const cb of this.flushCallbacks) cb();
    for (const h of this.histograms.values()) h.merge();
  }

  /** POST /reset_counters: counters to zero (Envoy leaves gauges and histograms alone). */
  resetCounters(): void {
    for (const c of this.counters.values()) c.reset();
  }
}

export class StatsScope {
  constructor(
    readonly store: StatsStore,
    readonly prefix: string,
  ) {}
  counter(name: string): Counter {
    return this.store.counter(this.prefix + name);
  }
  gauge(name: string): Gauge {
    return this.store.gauge(this.prefix + name);
  }
  histogram(name: string): Histogram {
    return this.store.histogram(this.prefix + name);
  }
  scope(name: string): StatsScope {
    return new StatsScope(this.store, this.prefix + name);
  }
}

export { Histogram };
