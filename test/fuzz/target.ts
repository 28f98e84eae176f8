/**
 * What a fuzz target is: one parser (or one running process) that reads bytes from outside, an
 * input generator, and a check that throws when an input shows a defect. The runner
 * (test/fuzz/run.ts) finds every file in test/fuzz/targets/ and runs its default export, so a
 * new target is one file there and nothing else.
 */
import type fc from 'fast-check';

export interface FuzzTarget<Input> {
  /** Must equal the file name without .ts; names test/fuzz/corpus/<name>/ and crashes/<name>/. */
  readonly name: string;
  /** One line for `npm run fuzz -- --list`. */
  readonly about: string;
  readonly input: fc.Arbitrary<Input>;
  /**
   * Throws (an AssertionError, or whatever the code under test threw that it must not) when the
   * input shows a defect; returns normally otherwise.
   */
  check(input: Input): void | Promise<void>;
  /**
   * For a target too slow for 10^6 inputs in a few minutes (a file or a server per input): a
   * default run lasts this many seconds instead. `--runs` and `--seconds` override either default.
   */
  readonly defaultSeconds?: number;
  /** The bound on one input before it counts as a hang; default 2,000 ms. */
  readonly maxInputMs?: number;
  /** The inputs `--ci` runs; default 2,000. Keep the whole CI pass to a few seconds. */
  readonly ciRuns?: number;
  /** Started once before the first input (a server the inputs are sent to); its result is kept. */
  setUp?(): Promise<void>;
  tearDown?(): Promise<void>;
  /** Checks after the whole run (the process stayed up, a legitimate login still works). */
  afterRun?(): Promise<void>;
  /** One line for the report after the run (what a server under test saw). */
  notes?(): string;
  /** The heap in use of a process under test, after a GC (MiB): taken after the short and the long run. */
  measureServerHeapMiB?(): Promise<number>;
}

/** Identity, for type inference in target files: `export default defineTarget({...})`. */
export function defineTarget<Input>(target: FuzzTarget<Input>): FuzzTarget<Input> {
  return target;
}

/**
 * Inputs as JSON (corpus entries and crashes): byte buffers become {"$bytes": base64} so a
 * crash file replays the exact bytes, NUL and 8-bit ones included.
 */
export function encodeInput(input: unknown): string {
  return JSON.stringify(
    input,
    function (key, value: unknown) {
      const raw: unknown = (this as Record<string, unknown>)[key];
      if (raw instanceof Uint8Array) return { $bytes: Buffer.from(raw).toString('base64') };
      return value;
    },
    2,
  );
}

export function decodeInput(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === 'object' && value !== null && '$bytes' in value && typeof value.$bytes === 'string') {
      return Buffer.from(value.$bytes, 'base64');
    }
    return value;
  });
}
