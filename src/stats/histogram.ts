// Histograms as Envoy keeps them: values (milliseconds, as integers) fall in
// log-linear bins of two significant digits (circllhist: 1.0-1.1, ..., 9.9-10,
// 10-11, ..., 990-1000, ...); quantiles are interpolated within a bin and the
// Prometheus buckets count the bins that end at or below each bound. Recording
// bumps one slot of a typed array: no allocation, no string. Every flush
// (stats_flush_interval, or each admin read with stats_flush_on_admin) folds
// the interval into the cumulative counts and recomputes both summaries.

/** Envoy's supported quantiles (HistogramStatisticsImpl::supportedQuantiles). */
export const SUPPORTED_QUANTILES = [0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1] as const;

/** Envoy's default buckets (HistogramSettingsImpl::defaultBuckets), in milliseconds. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

// Bins: slot 0 holds zero; then 90 bins (mantissa 10..99) per power of ten, from [1, 1.1) up to
// 99e10 (about three years in ms). Larger values land in the last bin.
const MAX_EXP = 11;
const SLOTS = 1 + 90 * (MAX_EXP + 1);
const POW10 = Array.from({ length: MAX_EXP + 2 }, (_, i) => 10 ** i);

/** Left edge and width of a bin, computed as circllhist does (value/10 * 10^exp). */
function binLeft(slot: number): number {
  if (slot === 0) return 0;
  const exp = Math.floor((slot - 1) / 90);
  const val = ((slot - 1) % 90) + 10;
  return (val / 10) * POW10[exp]!;
}

function binWidth(slot: number): number {
  if (slot === 0) return 0;
  return POW10[Math.floor((slot - 1) / 90)]! / 10;
}

function slotOf(value: number): number {
  // Envoy records unsigned integers: fractions are dropped, negatives and NaN count as zero.
  if (!(value >= 1)) return 0;
  let m = Math.floor(value);
  let exp = 1;
  if (m < 10) {
    m *= 10;
    exp = 0;
  }
  while (m >= 100) {
    m = Math.floor(m / 10);
    exp++;
  }
  if (exp > MAX_EXP) return SLOTS - 1;
  return 1 + exp * 90 + (m - 10);
}

/** A summary of a set of bins: quantiles, bucket counts, sample count and (approximate) sum. */
export class HistogramStatistics {
  quantiles: number[] = SUPPORTED_QUANTILES.map(() => Number.NaN);
  /** Cumulative count of samples at or below each supported bucket bound. */
  buckets: number[];
  sampleCount = 0;
  sampleSum = 0;

  constructor(readonly supportedBuckets: readonly number[]) {
    this.buckets = supportedBuckets.map(() => 0);
  }

  /** Recomputes from bin counts (circllhist's hist_approx_quantile / count_below / sum). */
  refresh(bins: ArrayLike<number> | undefined): void {
    const q = this.quantiles;
    const b = this.buckets;
    let total = 0;
    let sum = 0;
    if (bins) {
      for (let i = 0; i < SLOTS; i++) {
        const c = bins[i]!;
        if (c === 0) continue;
        total += c;
        sum += (binLeft(i) + binWidth(i) / 2) * c;
      }
    }
    this.sampleCount = total;
    this.sampleSum = sum;
    b.fill(0);
    if (!bins || total === 0) {
      q.fill(Number.NaN);
      return;
    }
    // Buckets: samples in bins whose upper edge is at or below the bound.
    let running = 0;
    let bi = 0;
    for (let i = 0; i < SLOTS && bi < b.length; i++) {
      const c = bins[i]!;
      if (c === 0) continue;
      const upper = binLeft(i) + binWidth(i);
      while (bi < b.length && upper > this.supportedBuckets[bi]!) b[bi++] = running;
      running += c;
    }
    while (bi < b.length) b[bi++] = running;
    // Quantiles: walk the non-empty bins and the quantiles together, interpolating within a bin.
    let slot = 0;
    while (bins[slot] === 0) slot++;
    let lower = 0;
    let upperCnt = bins[slot]!;
    let left = binLeft(slot);
    let width = binWidth(slot);
    for (let qi = 0; qi < SUPPORTED_QUANTILES.length; qi++) {
      const want = total * SUPPORTED_QUANTILES[qi]!;
      while (upperCnt < want) {
        let next = slot + 1;
        while (next < SLOTS && bins[next] === 0) next++;
        if (next >= SLOTS) break;
        slot = next;
        lower = upperCnt;
        upperCnt = lower + bins[slot]!;
        left = binLeft(slot);
        width = binWidth(slot);
      }
      if (lower === want) q[qi] = left;
      else if (upperCnt === want) q[qi] = left + width;
      else if (width === 0) q[qi] = left;
      else q[qi] = left + ((want - lower) / (upperCnt - lower)) * width;
    }
  }
}

export class Histogram {
  /** Bin counts since the last flush; allocated on the first value. */
  private interval: Uint32Array | undefined;
  private intervalSamples = 0;
  private cumulative: Float64Array | undefined;
  /** True once a flush has seen a value (Envoy's ParentHistogram::used). */
  used = false;
  readonly intervalStatistics: HistogramStatistics;
  readonly cumulativeStatistics: HistogramStatistics;

  constructor(
    readonly name: string,
    readonly tagExtractedName: string,
    readonly tags: readonly Tag[],
    readonly supportedBuckets: readonly number[] = DEFAULT_BUCKETS,
  ) {
    this.intervalStatistics = new HistogramStatistics(supportedBuckets);
    this.cumulativeStatistics = new HistogramStatistics(supportedBuckets);
  }

  recordValue(value: number): void {
    const bins = (this.interval ??= new Uint32Array(SLOTS));
    bins[slotOf(value)]!++;
    this.intervalSamples++;
  }

  /** Folds the interval into the cumulative counts and recomputes both summaries. */
  merge(): void {
    const bins = this.interval;
    if (this.intervalSamples === 0 || !bins) {
      // An idle interval: only the interval summary changes (to "no samples").
      if (this.used && this.intervalStatistics.sampleCount !== 0) this.intervalStatistics.refresh(undefined);
      return;
    }
    const cum = (this.cumulative ??= new Float64Array(SLOTS));
    for (let i = 0; i < SLOTS; i++) if (bins[i] !== 0) cum[i]! += bins[i]!;
    this.intervalStatistics.refresh(bins);
    this.cumulativeStatistics.refresh(cum);
    bins.fill(0);
    this.intervalSamples = 0;
    this.used = true;
  }
}

/** A histogram that a stats_matcher rejected: values go nowhere. */
export class NullHistogram extends Histogram {
  override recordValue(_value: number): void {}
  override merge(): void {}
}

export interface Tag {
  name: string;
  value: string;
}

/** Envoy's `{}` rendering of a double in summaries (`nan`, shortest round trip otherwise). */
export function formatDouble(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (v === Number.POSITIVE_INFINITY) return 'inf';
  return String(v);
}

/** printf's `%g` (6 significant digits), as Envoy prints bucket bounds (`B3.6e+06`). */
export function formatG(v: number): string {
  if (v === 0) return '0';
  const exp = Math.floor(Math.log10(Math.abs(v)));
  if (exp < -4 || exp >= 6) {
    const [m, e] = v.toExponential(5).split('e') as [string, string];
    const mant = m.includes('.') ? m.replace(/0+$/, '').replace(/\.$/, '') : m;
    const n = Number(e);
    return `${mant}e${n < 0 ? '-' : '+'}${Math.abs(n) < 10 ? '0' : ''}${Math.abs(n)}`;
  }
  return String(Number(v.toPrecision(6)));
}
