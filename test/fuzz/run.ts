/**
 * `npm run fuzz`: every target in test/fuzz/targets/ (or those named with --target), each in its
 * own process under --unhandled-rejections=strict, for 10^6 inputs (for its defaultSeconds if it
 * is slower, like the config loader and the end-to-end one) unless --runs or --seconds say otherwise. A watchdog kills a
 * worker that reports nothing for --hang-seconds: a parser stuck in a loop never returns to say so.
 *
 *   npm run fuzz -- [--target NAME[,NAME]] [--runs N] [--seconds S] [--seed N] [--ci] [--list]
 *
 * --ci is the short seeded pass `npm test` runs (test/fuzz/fuzz.test.ts): every target in one
 * process, a few thousand inputs each, seed 1405 unless --seed is given. Exit status 1 if any
 * target failed, a worker died, or a worker hung; each failing input is saved under
 * test/fuzz/crashes/<target>/ and replayed by every later run, CI included.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { TargetResult, WorkerOptions } from './worker.js';

const FUZZ_DIR = import.meta.dirname;
const CI_SEED = 1405;

const { values } = parseArgs({
  options: {
    target: { type: 'string', multiple: true },
    runs: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    ci: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    'hang-seconds': { type: 'string', default: '60' },
  },
});

const allTargets = readdirSync(join(FUZZ_DIR, 'targets'))
  .filter((n) => n.endsWith('.ts'))
  .map((n) => n.slice(0, -3))
  .sort();

if (values.list) {
  const { loadTarget } = await import('./worker.js');
  for (const name of allTargets) console.log(`${name.padEnd(20)} ${(await loadTarget(name)).about}`);
  process.exit(0);
}

const chosen = (values.target ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');
for (const name of chosen) if (!allTargets.includes(name)) throw new Error(`no fuzz target "${name}"; --list shows them`);
const targets = chosen.length > 0 ? chosen : allTargets;
const seed = values.seed === undefined ? (values.ci ? CI_SEED : Date.now() % 2 ** 31) : Number(values.seed);
const options: WorkerOptions = {
  runs: values.runs === undefined ? undefined : Number(values.runs),
  seconds: values.seconds === undefined ? undefined : Number(values.seconds),
  seed,
  ci: values.ci,
};
const hangMs = Number(values['hang-seconds']) * 1000;

/** Runs `names` in one worker process; resolves with their results, or a failure for the process. */
function runWorker(names: readonly string[]): Promise<TargetResult[]> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--unhandled-rejections=strict', '--expose-gc', '--no-warnings', join(FUZZ_DIR, 'worker.ts'), JSON.stringify(options), ...names],
    // Its own process group, so the watchdog's kill also takes what the worker started (the e2e
    // popwarden) with it; Dovecot's harness has its own watchdog.
    { stdio: ['ignore', 'pipe', 'inherit'], detached: true },
  );
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    killGroup(signal);
    process.exit(1);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: TargetResult[] = [];
  let buffered = '';
  let hung = false;
  const watchdog = setTimeout(onHang, hangMs);
  function onHang(): void {
    hung = true;
    killGroup('SIGKILL');
  }
  child.stdout.on('data', (chunk: Buffer) => {
    watchdog.refresh();
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      const event = JSON.parse(line) as { progress?: string; inputs?: number; result?: TargetResult };
      if (event.result !== undefined) {
        results.push(event.result);
        report(event.result);
      } else if (event.progress !== undefined && !values.ci) {
        process.stderr.write(`fuzz: ${event.progress}: ${event.inputs} inputs\n`);
      }
    }
  });
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const missing = names.filter((n) => !results.some((r) => r.target === n));
      if (code !== 0 || signal !== null) {
        // Whatever the worker left running (it died, or was killed) goes with it.
        killGroup('SIGKILL');
        const why = hung ? `no progress for ${hangMs / 1000} s: a hang (killed)` : `worker exited with ${signal ?? `code ${code}`}`;
        // Every target that did not report failed. If all reported and all passed, the process
        // itself failed (a stray rejection after the last report); a worker whose target failed
        // exits with 1 too, and that failure is reported already.
        const unexplained = missing.length === 0 && results.every((r) => r.ok) ? ['(worker process)'] : [];
        for (const name of missing.length > 0 ? missing : unexplained) {
          const failure = { target: name, ok: false, failure: why } as TargetResult;
          results.push(failure);
          report(failure);
        }
      }
      resolve(results);
    });
  });
}

function report(result: TargetResult): void {
  if (result.ok) {
    process.stderr.write(
      `fuzz: ${result.target}: ok, ${result.inputs} inputs in ${(result.ms / 1000).toFixed(1)} s (${result.inputsPerSecond}/s), ` +
        `${result.replayed} saved inputs replayed, heap ${result.heapAfterShortRunMiB} MiB after ${result.shortRunInputs} inputs, ` +
        `${result.heapAfterLongRunMiB} MiB after all; slowest input ${result.slowestInputMs} ms\n` +
        (result.notes === undefined ? '' : `fuzz: ${result.target}: ${result.notes}\n`) +
        (result.serverHeapAfterLongRunMiB === undefined ? '' : `fuzz: ${result.target}: server heap ${result.serverHeapAfterShortRunMiB} MiB after the short run, ${result.serverHeapAfterLongRunMiB} MiB after all\n`) +
        Object.entries(result.warnings ?? {}).map(([message, count]) => `fuzz: ${result.target}: process warning ${count}x: ${message}\n`).join(''),
    );
  } else {
    process.stderr.write(`fuzz: ${result.target}: FAILED (seed ${seed})\n${result.failure}\n${result.crashFile ? `input: ${result.crashFile}\n` : ''}`);
  }
}

process.stderr.write(`fuzz: seed ${seed}, targets ${targets.join(', ')}\n`);
const results: TargetResult[] = [];
if (values.ci) results.push(...(await runWorker(targets)));
else for (const name of targets) results.push(...(await runWorker([name])));

if (!values.ci) {
  console.log('\n| target | inputs | seconds | inputs/s | heap after short run (MiB) | heap after long run (MiB) | slowest input (ms) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(r.ok ? `| ${r.target} | ${r.inputs} | ${(r.ms / 1000).toFixed(1)} | ${r.inputsPerSecond} | ${r.heapAfterShortRunMiB} (${r.shortRunInputs} inputs) | ${r.heapAfterLongRunMiB} | ${r.slowestInputMs} |` : `| ${r.target} | FAILED | | | | | |`);
  }
}
process.exitCode = results.every((r) => r.ok) && results.length >= targets.length ? 0 : 1;
