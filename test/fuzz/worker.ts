/**
 * Runs fuzz targets inside one process started by test/fuzz/run.ts, under
 * --unhandled-rejections=strict and --expose-gc. For each target: replay its corpus and every
 * crash found before (the regressions), then fast-check from the seed, a short run and a long
 * one, measuring the heap after each. Reports one JSON line per event on stdout; the parent's
 * watchdog reads them as the heartbeat.
 *
 * Process-level check (issue 14.5): an uncaught exception or unhandled rejection anywhere in the
 * process is written to stderr with the input being tried, saved as a crash, and the process
 * dies of it (nothing here handles it), so the run fails.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { decodeInput, encodeInput, type FuzzTarget } from './target.js';

export const FUZZ_DIR = import.meta.dirname;

export interface WorkerOptions {
  readonly runs: number | undefined;
  readonly seconds: number | undefined;
  readonly seed: number;
  readonly ci: boolean;
}

export interface TargetResult {
  readonly target: string;
  readonly ok: boolean;
  readonly replayed: number;
  readonly inputs: number;
  readonly ms: number;
  readonly inputsPerSecond: number;
  readonly heapAfterShortRunMiB: number;
  readonly heapAfterLongRunMiB: number;
  readonly shortRunInputs: number;
  readonly slowestInputMs: number;
  /** Process warnings seen during the target's run, by message. */
  readonly warnings?: Record<string, number>;
  /** The target's own line about the run (see FuzzTarget.notes). */
  readonly notes?: string;
  /** The heap of the process under test, for targets that have one (the e2e popwarden). */
  readonly serverHeapAfterShortRunMiB?: number;
  readonly serverHeapAfterLongRunMiB?: number;
  readonly failure?: string;
  readonly crashFile?: string;
}

/** By default, a single input taking longer than this is a hang (sync parsers take microseconds). */
const MAX_INPUT_MS = 2_000;
const HEARTBEAT_MS = 1_000;

let current: { target: string; input: unknown } | undefined;

/**
 * Process warnings by message, reported per target instead of printed per input (the worker runs
 * with --no-warnings): the yaml library warns on every collection used as a key.
 */
const warnings = new Map<string, number>();
process.on('warning', (warning) => warnings.set(warning.message.slice(0, 120), (warnings.get(warning.message.slice(0, 120)) ?? 0) + 1));

function emit(event: Record<string, unknown>): void {
  writeSync(1, `${JSON.stringify(event)}\n`);
}

function saveCrash(target: string, input: unknown, found: string, error: string): string {
  const dir = join(FUZZ_DIR, 'crashes', target);
  mkdirSync(dir, { recursive: true });
  const encoded = encodeInput(input);
  const file = join(dir, `${createHash('sha256').update(encoded).digest('hex').slice(0, 12)}.json`);
  writeFileSync(file, `{\n"found": ${JSON.stringify(found)},\n"error": ${JSON.stringify(error.split('\n')[0])},\n"input": ${encoded}\n}\n`);
  return file;
}

process.on('uncaughtExceptionMonitor', (error, origin) => {
  // Not saved as a crash: a stray rejection surfaces a turn after the input that made it, so the
  // input last tried may be innocent. Its target, seed and input are what a rerun needs.
  const last = current === undefined ? '' : `fuzz: while running ${current.target}; the input last tried was ${encodeInput(current.input)}\n`;
  writeSync(2, `fuzz: the process saw an ${origin}: ${error.stack ?? String(error)}\n${last}`);
});

/** The saved inputs of one kind (corpus or crashes) for a target, each with its file. */
function savedInputs(kind: 'corpus' | 'crashes', target: string): { file: string; input: unknown }[] {
  const dir = join(FUZZ_DIR, kind, target);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return [];
  }
  return names.map((n) => {
    const file = join(dir, n);
    const parsed = decodeInput(readFileSync(file, 'utf8')) as { input: unknown };
    return { file, input: parsed.input };
  });
}

export async function loadTarget(name: string): Promise<FuzzTarget<unknown>> {
  const module = (await import(join(FUZZ_DIR, 'targets', `${name}.ts`))) as { default: FuzzTarget<unknown> };
  if (module.default?.name !== name) throw new Error(`test/fuzz/targets/${name}.ts must export default a target named "${name}"`);
  return module.default;
}

function heapMiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Math.round((process.memoryUsage().heapUsed / 1048576) * 10) / 10;
}

function isAsync(target: FuzzTarget<unknown>): boolean {
  return target.check.constructor.name === 'AsyncFunction';
}

export async function runTarget(target: FuzzTarget<unknown>, options: WorkerOptions): Promise<TargetResult> {
  const maxInputMs = target.maxInputMs ?? MAX_INPUT_MS;
  let slowest = 0;
  let inputs = 0;
  let lastBeat = Date.now();
  /** After each input: its time against the hang bound, and a heartbeat now and then. */
  const finished = (started: number): void => {
    const took = performance.now() - started;
    if (took > slowest) slowest = took;
    if (took > maxInputMs) throw new Error(`one input took ${Math.round(took)} ms (bound ${maxInputMs} ms): a hang`);
    inputs++;
    if (Date.now() - lastBeat > HEARTBEAT_MS) {
      lastBeat = Date.now();
      emit({ progress: target.name, inputs });
    }
  };
  const syncPredicate = (input: unknown): void => {
    current = { target: target.name, input };
    const started = performance.now();
    target.check(input);
    finished(started);
  };
  const asyncPredicate = async (input: unknown): Promise<void> => {
    current = { target: target.name, input };
    const started = performance.now();
    await target.check(input);
    finished(started);
  };
  const property = isAsync(target) ? fc.asyncProperty(target.input, asyncPredicate) : fc.property(target.input, syncPredicate);

  /** A failing result; the input is saved as a crash unless it came from a saved file. */
  const failed = (failure: string, input: unknown, found: string, savedAs?: string): TargetResult => ({
    target: target.name,
    ok: false,
    replayed: 0,
    inputs,
    ms: 0,
    inputsPerSecond: 0,
    heapAfterShortRunMiB: 0,
    heapAfterLongRunMiB: 0,
    shortRunInputs: 0,
    slowestInputMs: Math.round(slowest),
    failure,
    crashFile: savedAs ?? saveCrash(target.name, input, found, failure),
  });

  warnings.clear();
  await target.setUp?.();
  try {
    // The regressions first: every crash found before must now pass, and so must the corpus.
    const saved = [...savedInputs('corpus', target.name), ...savedInputs('crashes', target.name)];
    for (const { file, input } of saved) {
      try {
        if (isAsync(target)) await asyncPredicate(input);
        else syncPredicate(input);
      } catch (error) {
        return failed(`${file}: ${(error as Error).stack ?? String(error)}`, input, `replay of ${file}`, file);
      }
    }

    const untilTime = !options.ci && options.runs === undefined && (options.seconds ?? target.defaultSeconds) !== undefined;
    const planned = options.ci ? (target.ciRuns ?? 2_000) : (options.runs ?? (untilTime ? Number.MAX_SAFE_INTEGER : 1_000_000));
    const seconds = options.ci ? undefined : (options.seconds ?? (options.runs === undefined ? target.defaultSeconds : undefined));
    const timeLimit = seconds === undefined ? {} : { interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false };
    const shortRuns = untilTime ? 1_000 : Math.max(1, Math.min(10_000, Math.floor(planned / 100)));
    const examples = saved.map(({ input }) => [input] as [unknown]);
    const phase = async (numRuns: number, limit: object): Promise<TargetResult | undefined> => {
      const details = await fc.check(property as fc.IAsyncProperty<[unknown]>, {
        seed: options.seed,
        numRuns,
        examples,
        ...limit,
        ...(isAsync(target) ? { timeout: maxInputMs } : {}),
      });
      if (!details.failed) return undefined;
      const input = details.counterexample?.[0];
      const error = details.errorInstance instanceof Error ? (details.errorInstance.stack ?? details.errorInstance.message) : String(details.errorInstance);
      return failed(error, input, `npm run fuzz -- --target ${target.name} --seed ${options.seed} (path ${details.counterexamplePath ?? '?'})`);
    };

    const shortFailure = await phase(shortRuns, {});
    if (shortFailure !== undefined) return shortFailure;
    const heapShort = heapMiB();
    const serverShort = await target.measureServerHeapMiB?.();
    inputs = 0;
    const t0 = performance.now();
    const longFailure = await phase(planned, timeLimit);
    if (longFailure !== undefined) return longFailure;
    const ms = performance.now() - t0;
    // A stray rejection surfaces after the turn that made it: let it, before reporting success.
    await new Promise((resolve) => setTimeout(resolve, 10));
    const heapLong = heapMiB();
    const serverLong = await target.measureServerHeapMiB?.();
    await target.afterRun?.();
    return {
      target: target.name,
      ok: true,
      replayed: saved.length,
      inputs,
      ms: Math.round(ms),
      inputsPerSecond: Math.round(inputs / (ms / 1000)),
      heapAfterShortRunMiB: heapShort,
      heapAfterLongRunMiB: heapLong,
      shortRunInputs: shortRuns,
      slowestInputMs: Math.round(slowest * 10) / 10,
      warnings: Object.fromEntries(warnings),
      ...(target.notes === undefined ? {} : { notes: target.notes() }),
      ...(serverShort === undefined || serverLong === undefined ? {} : { serverHeapAfterShortRunMiB: serverShort, serverHeapAfterLongRunMiB: serverLong }),
    };
  } finally {
    current = undefined;
    await target.tearDown?.();
  }
}

/** `node worker.ts '<options json>' target...` */
async function main(): Promise<void> {
  const [optionsJson, ...names] = process.argv.slice(2);
  const options = JSON.parse(optionsJson ?? '{}') as WorkerOptions;
  let failures = 0;
  for (const name of names) {
    const result = await runTarget(await loadTarget(name), options);
    if (!result.ok) failures++;
    emit({ result });
  }
  process.exitCode = failures === 0 ? 0 : 1;
}

if (process.argv[1] === import.meta.filename) await main();
