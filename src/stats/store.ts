// Stats with Envoy's names. Counters and gauges are objects created once
// (when a cluster, listener or HCM is built) and bumped on the hot path with
// no string building. Histograms and Prometheus export come with the
// observability work.

export class Counter {
  value = 0;
  constructor(readonly name: string) {}
  inc(n = 1): void {
    this.value += n;
  }
}

export class Gauge {
  value = 0;
  constructor(readonly name: string) {}
  inc(n = 1): void {
    this.value += n;
  }
  dec(n = 1): void {
    this.value -= n;
  }
  set(v: number): void {
    this.value = v;
  }
}

export class StatsStore {
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();

  counter(name: string): Counter {
    let c = this.counters.get(name);
    if (!c) this.counters.set(name, (c = new Counter(name)));
    return c;
  }

  gauge(name: string): Gauge {
    let g = this.gauges.get(name);
    if (!g) this.gauges.set(name, (g = new Gauge(name)));
    return g;
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
  scope(name: string): StatsScope {
    return new StatsScope(this.store, this.prefix + name);
  }
}
