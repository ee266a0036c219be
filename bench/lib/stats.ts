/** Latency statistics: every percentile comes from a perf_hooks histogram. */
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";

export interface LatencySummary {
  count: number;
  /** All in milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Percentiles drawn in the charts. */
export const CHART_PERCENTILES = [
  0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 99.95, 99.99, 100,
] as const;

/** A histogram of latencies recorded in µs. */
export class Latency {
  readonly h: RecordableHistogram = createHistogram({
    lowest: 1,
    highest: 600_000_000,
    figures: 3,
  });

  add(samplesUs: ArrayLike<number>): this {
    for (let i = 0; i < samplesUs.length; i++) {
      const v = samplesUs[i];
      this.h.record(v < 1 ? 1 : Math.round(v));
    }
    return this;
  }

  addOne(us: number): this {
    this.h.record(us < 1 ? 1 : Math.round(us));
    return this;
  }

  get count(): number {
    return this.h.count;
  }

  /** p in 0..100, result in ms. */
  ms(p: number): number {
    return this.h.count === 0 ? Number.NaN : this.h.percentile(p === 0 ? 0.0001 : p) / 1000;
  }

  summary(): LatencySummary {
    const n = this.h.count;
    return {
      count: n,
      p50: this.ms(50),
      p90: this.ms(90),
      p99: this.ms(99),
      p999: this.ms(99.9),
      max: n ? this.h.max / 1000 : Number.NaN,
      mean: n ? this.h.mean / 1000 : Number.NaN,
    };
  }

  /** [percentile, ms] points for a chart. */
  curve(): [number, number][] {
    if (this.h.count === 0) return [];
    return CHART_PERCENTILES.map((p) => [p, p === 100 ? this.h.max / 1000 : this.ms(p)]);
  }
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
