/**
 * Labelled series prepared once, so that updating one does no label hashing (issue 10: prom-client
 * hashes the label object on every inc() and observe(), and its labels() children do too, which
 * cost about 1 µs per relayed command). The series is created through prom-client's public API,
 * then its sample record is held and updated in place, exactly as prom-client 15's own inc() and
 * observe() update it; the exposition stays prom-client's. If a prom-client upgrade changes that
 * record, preparing throws at start (and the metrics tests fail), rather than counts going astray.
 */
import type { Counter, Histogram } from 'prom-client';

/** Label name -> value; every value already passed its allow-list. */
export type Labels = Readonly<Record<string, string>>;

export interface PreparedCounter {
  inc(by?: number): void;
}

export interface PreparedHistogram {
  observe(value: number): void;
}

/** prom-client 15 keeps one record per label set in `hashMap`, keyed by a hash of the labels. */
interface SampleRecords<R> {
  readonly hashMap: { readonly [hash: string]: R & { readonly labels: Labels } };
}
interface CounterRecord {
  value: number;
}
interface HistogramRecord {
  sum: number;
  count: number;
  bucketValues: Record<number, number>;
}

function recordOf<R>(metric: object, labels: Labels, valid: (record: R) => boolean): R {
  const { hashMap } = metric as SampleRecords<R>;
  const wanted = Object.entries(labels);
  for (const record of Object.values(hashMap ?? {})) {
    const have = record.labels;
    if (Object.keys(have).length === wanted.length && wanted.every(([name, value]) => have[name] === value)) {
      if (!valid(record)) break;
      return record;
    }
  }
  throw new Error(`prom-client keeps its samples differently than prepared-series.ts expects (labels ${JSON.stringify(labels)})`);
}

/** The series of `counter` with these labels (created at 0 if new), ready for inc() without hashing. */
export function prepareCounter(counter: Counter<string>, labels: Labels): PreparedCounter {
  counter.inc(labels, 0);
  const record = recordOf<CounterRecord>(counter, labels, (r) => typeof r.value === 'number');
  return {
    inc(by = 1) {
      record.value += by;
    },
  };
}

/**
 * The series of `histogram` with these labels (created empty if new), ready for observe() without
 * hashing. `buckets` are the upper bounds the histogram was created with, in increasing order.
 */
export function prepareHistogram(histogram: Histogram<string>, labels: Labels, buckets: readonly number[]): PreparedHistogram {
  histogram.zero(labels);
  const record = recordOf<HistogramRecord>(histogram, labels, (r) =>
    typeof r.sum === 'number' && typeof r.count === 'number' && buckets.every((b) => r.bucketValues?.[b] === 0));
  // The property names of the bucket counts, made once: a bound such as 0.005 used as a key is
  // turned into a string on every access (issue 10: a third of the metrics' cost per command).
  const keys = buckets.map(String);
  return {
    observe(value) {
      // As prom-client's own observe(): a NaN or infinite duration is a caller's bug, not a sample.
      if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
      record.sum += value;
      record.count += 1;
      // The first bound at or above the value; above the last one only the +Inf bucket (the count) grows.
      for (let i = 0; i < buckets.length; i++) {
        if (value <= buckets[i]!) {
          (record.bucketValues as Record<string, number>)[keys[i]!]! += 1;
          return;
        }
      }
    },
  };
}
