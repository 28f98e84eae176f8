/**
 * The soak's summary in Markdown: popwarden's figures before, at the peak of, at the end of and
 * after the load; what the clients saw; and what the logs say about how each session ended.
 * A session that ended for any reason but QUIT is a lost one: every simulated client QUITs.
 * Run on its own it makes the summary again from a run's samples and logs:
 * `node --import tsx bench/endurance-report.ts bench/results/soak.json /tmp/soak/run-N`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ClientCounts } from './endurance-clients.js';
import type { JemallocStats } from './jemalloc-stats.js';

export interface Sample {
  /** Seconds since the start of the run. */
  readonly t: number;
  readonly phase: 'warm-up' | 'baseline' | 'load' | 'after';
  /** Taken right after a heap snapshot, that is after a full garbage collection. */
  readonly fullGc: boolean;
  readonly rssBytes: number | null;
  readonly heapUsedBytes: number | null;
  readonly heapTotalBytes: number | null;
  /** V8's code spaces (compiled machine code), part of heapUsedBytes; absent in older runs. */
  readonly heapCodeBytes?: number | null;
  /** The RSS split (smaps_rollup): anonymous pages, and the rest (mostly node's code and libraries from disk). */
  readonly rssAnonBytes?: number | null;
  readonly rssFileBytes?: number | null;
  readonly openFds: number | null;
  readonly eventLoopP99Seconds: number | null;
  readonly eventLoopMaxSeconds: number | null;
  /** popwarden_connections_active, all listeners. */
  readonly sessions: number | null;
  readonly storeUp: number | null;
  readonly loginAttempts: number | null;
  readonly cpuSeconds: number;
  readonly load1: number;
  readonly clientSessionsOpen: number;
  readonly clientErrors: number;
}

export interface Event {
  readonly t: number;
  readonly what: 'warm-up start' | 'warm-up stop' | 'load start' | 'SIGHUP' | 'Redis stopped' | 'Redis started' | 'load stop' | 'malloc_trim';
}

export interface SoakRun {
  readonly samples: readonly Sample[];
  readonly events: readonly Event[];
  readonly clients: ClientCounts;
  readonly popwardenLog: string;
  /** undefined when it was not kept. */
  readonly dovecotLog: string | undefined;
  readonly setup: { minutes: number; loads?: number; primingSnapshot?: boolean; goodClients: number; staleClients: number; workers: number; users: number; nofile: number; env?: Record<string, string> };
  /** jemalloc's counts at the baseline and after the load (read through gdb); absent without jemalloc or gdb. */
  readonly jemalloc?: { readonly baseline?: JemallocStats | undefined; readonly after?: JemallocStats | undefined; readonly afterGc?: JemallocStats | undefined; readonly afterEachLoad?: readonly (JemallocStats | undefined)[] };
  /** When the run started (ISO); runs recorded before it was kept say when the summary was made. */
  readonly startedAt?: string;
}

interface LogLine {
  /** pino's level: a label ('warn') as popwarden formats it, or a number. */
  readonly level?: string | number;
  readonly msg?: string;
  readonly reason?: string;
  readonly result?: string;
  readonly durationMs?: number;
  readonly outageMs?: number;
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
const levelOf = (l: LogLine): number => (typeof l.level === 'number' ? l.level : LEVELS[l.level ?? ''] ?? 0);

/** Reasons a session may end with when nothing was lost: every simulated client QUITs. */
export const NORMAL_CLOSE_REASONS: ReadonlySet<string> = new Set(['quit']);

function parseLog(text: string): { lines: LogLine[]; unparsed: number } {
  const lines: LogLine[] = [];
  let unparsed = 0;
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    try {
      lines.push(JSON.parse(raw) as LogLine);
    } catch {
      unparsed += 1;
    }
  }
  return { lines, unparsed };
}

const tally = (keys: readonly string[]): [string, number][] => {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]);
};

/** `gc`: compared between samples read right after a full GC (heap figures); otherwise between ordinary ones. */
type Measure = { readonly label: string; readonly of: (s: Sample) => number | null; readonly format: (v: number) => string; readonly gc?: boolean };
const MB = (v: number): string => `${(v / 1e6).toFixed(1)} MB`;
const MS = (v: number): string => `${(v * 1000).toFixed(1)} ms`;
const N = (v: number): string => v.toFixed(0);

const MEASURES: readonly Measure[] = [
  { label: 'RSS', of: (s) => s.rssBytes, format: MB },
  { label: 'RSS: anonymous (heaps, allocator)', of: (s) => s.rssAnonBytes ?? null, format: MB },
  { label: 'RSS: file-backed (node and its libraries)', of: (s) => s.rssFileBytes ?? null, format: MB },
  { label: 'heap used (after a full GC)', of: (s) => s.heapUsedBytes, format: MB, gc: true },
  { label: 'heap used less compiled code (after a full GC)', of: (s) => (s.heapUsedBytes === null || s.heapCodeBytes == null ? null : s.heapUsedBytes - s.heapCodeBytes), format: MB, gc: true },
  { label: 'compiled code (V8 code spaces, after a full GC)', of: (s) => s.heapCodeBytes ?? null, format: MB, gc: true },
  { label: 'heap total (after a full GC)', of: (s) => s.heapTotalBytes, format: MB, gc: true },
  { label: 'open descriptors', of: (s) => s.openFds, format: N },
  { label: 'event-loop delay p99 (per 10 s)', of: (s) => s.eventLoopP99Seconds, format: MS },
  { label: 'event-loop delay max (per 10 s)', of: (s) => s.eventLoopMaxSeconds, format: MS },
  { label: 'sessions open', of: (s) => s.sessions, format: N },
];

const defined = (xs: readonly (number | null)[]): number[] => xs.filter((x): x is number => x !== null);

export function summarize(run: SoakRun): string {
  const { samples, events, clients, setup } = run;
  const byPhase = (phase: Sample['phase']): Sample[] => samples.filter((s) => s.phase === phase);
  // Heap figures are compared right after a full GC (a heap snapshot) at both ends; the others,
  // the RSS first, between ordinary samples, nothing forced: the last one before the baseline's
  // snapshot (30 s after the warm-up session) and the one a fixed time after the load stopped.
  const baselineGc = byPhase('baseline').find((s) => s.fullGc)!;
  const baseline = byPhase('baseline').filter((s) => !s.fullGc && s.t < baselineGc.t).at(-1)!;
  const load = byPhase('load');
  const loadStart = events.find((e) => e.what === 'load start')!.t;
  const loadStop = events.find((e) => e.what === 'load stop')!.t;
  // With --loads N, the settle that "after" reads follows the last load.
  const lastStop = events.filter((e) => e.what === 'load stop').at(-1)!.t;
  // The last sample before the clients were told to stop (later ones are the drain).
  const endOfLoad = load.filter((s) => s.t <= loadStop).at(-1)!;
  const afterGc = byPhase('after').filter((s) => s.fullGc).at(-1)!;
  // The after-load sample is the last ordinary one before malloc_trim (if it was called).
  const trim = events.find((e) => e.what === 'malloc_trim')?.t ?? Number.POSITIVE_INFINITY;
  const after = byPhase('after').filter((s) => !s.fullGc && s.t < trim).at(-1)!;
  const afterTrim = byPhase('after').find((s) => !s.fullGc && s.t > trim);
  // The RSS on its way back: the ordinary sample nearest each whole minute after the stop.
  const settling = byPhase('after').filter((s) => !s.fullGc && s.t < trim);
  const rssByMinute = Array.from({ length: Math.floor((after.t - lastStop) / 60) }, (_, i) => (i + 1) * 60)
    .map((dt) => settling.reduce((best, s) => (Math.abs(s.t - lastStop - dt) < Math.abs(best.t - lastStop - dt) ? s : best)))
    .filter((s, i, all) => all.indexOf(s) === i && s.rssBytes !== null);
  const loads = samples.map((s) => s.load1);
  const firstLoad = load[0]!;
  const cpuDuringLoad = (endOfLoad.cpuSeconds - firstLoad.cpuSeconds) / (endOfLoad.t - firstLoad.t);
  const steady = load.filter((s) => s.t > loadStart + 90 && s.t <= loadStop);
  const steadySessions = defined(steady.map((s) => s.sessions));

  const popwarden = parseLog(run.popwardenLog);
  const closes = popwarden.lines.filter((l) => l.msg === 'session closed');
  const reasons = tally(closes.map((l) => l.reason ?? '(none)'));
  const lost = reasons.filter(([r]) => !NORMAL_CLOSE_REASONS.has(r)).reduce((sum, [, n]) => sum + n, 0);
  const errors = popwarden.lines.filter((l) => levelOf(l) >= 50);
  const warnings = tally(popwarden.lines.filter((l) => levelOf(l) === 40).map((l) => l.msg ?? '(no msg)'));
  const logins = popwarden.lines.filter((l) => l.msg === 'login attempt');
  const loginMs = (result: string): number[] => logins.filter((l) => l.result === result).map((l) => l.durationMs ?? 0).sort((a, b) => a - b);
  const quantile = (xs: readonly number[], q: number): number => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0;
  const loginLine = (result: string): string => {
    const ms = loginMs(result);
    return `${ms.length} ${result} (p50 ${quantile(ms, 0.5)} ms, p99 ${quantile(ms, 0.99)} ms, max ${ms.at(-1) ?? 0} ms)`;
  };
  const otherResults = tally(logins.filter((l) => l.result !== 'success' && l.result !== 'failure').map((l) => l.result ?? '(none)'));
  // The reload in popwarden's own words; the store's outages counted (a loaded machine has many short ones).
  const reloads = popwarden.lines.filter((l) => /reload/.test(l.msg ?? ''));
  const outages = popwarden.lines.filter((l) => /^rate-limit store \(Redis\) is back/.test(l.msg ?? '')).map((l) => l.outageMs ?? 0).sort((a, b) => a - b);
  const dovecotProblems = (run.dovecotLog ?? '').split('\n').filter((l) => /\b(Error|Fatal|Panic):/.test(l));
  const clientErrors = Object.entries(clients.errors).sort((a, b) => b[1] - a[1]);

  const out: string[] = [];
  out.push(`# Soak: ${setup.minutes} minutes, ${setup.goodClients} mail clients and ${setup.staleClients} with a stale password`);
  out.push('');
  out.push(`Run ${(run.startedAt ?? new Date().toISOString()).slice(0, 16)}Z with \`npm run bench:soak -- --minutes ${setup.minutes} --sessions ${setup.goodClients}\` on ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}. `
    + `The machine was shared with other work: load average (1 min) ${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}, mean ${(loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(1)}, during the run.`);
  out.push('');
  const envWords = Object.entries(setup.env ?? {}).map(([k, v]) => `${k}=${v}`);
  out.push(`popwarden from dist/${envWords.length === 0 ? '' : ` started with \`${envWords.join(' ')}\` in its environment`} with its default limits and failure delay (2 s), \`--limits-max-sessions 4000\`, ${setup.nofile} descriptors, logs at info, a real redis-server as the limiter's store, `
    + `in front of Dovecot (bench/backend.ts) with ${setup.users} mailboxes of 8 everyday mails, one of 100 KB and one of 1 MB. ${setup.workers} load-generator processes (bench/endurance-clients.ts).`);
  out.push('');
  out.push(`Timeline (s from start): ${events.map((e) => `${e.what} ${e.t.toFixed(0)}`).join(', ')}; last sample ${samples.at(-1)!.t.toFixed(0)}.`);
  out.push('');
  const warmedUp = events.some((e) => e.what === 'warm-up stop')
    ? 'after a one-minute warm-up load (60 clients with the same mix, thinking 1 to 5 s: every path of the load has run once) and 30 s idle'
    : 'after one warm-up session and 30 s idle';
  const primed = setup.primingSnapshot === true
    ? ' A first heap snapshot, read by nothing, came before the baseline: V8 keeps the object-ID map of a process\'s first snapshot for its life (native memory in proportion to the heap\'s objects), so both ends hold it.'
    : '';
  out.push(`Baseline: ${(baseline.t).toFixed(0)} s into the run, ${warmedUp}, before the load. After the load: ${(after.t - lastStop).toFixed(0)} s after the${lastStop === loadStop ? '' : ' last load\'s'} stop (the clients had all quit), `
    + 'before anything was forced (no GC, no trim). The RSS, descriptors, event-loop delay and sessions are these two ordinary samples. '
    + 'Heap figures at both ends are read right after a full GC (a heap snapshot, just after the baseline sample and after the after-load one); '
    + "compiled code (V8's code spaces) is shown apart, as it grows with every code path the load warmed and is not data. "
    + `Event-loop delay is per 10 s window; the windows with a snapshot show it (hundreds of ms).${primed}`);
  out.push('');
  out.push('| popwarden | baseline | peak under load | end of load | after the load | after / baseline |');
  out.push('|---|---|---|---|---|---|');
  for (const m of MEASURES) {
    const peak = Math.max(...defined(load.map(m.of)));
    const [b, e, a] = [m.of(m.gc === true ? baselineGc : baseline), m.of(endOfLoad), m.of(m.gc === true ? afterGc : after)];
    const ratio = b !== null && a !== null && b > 0 ? (a / b).toFixed(2) : '-';
    out.push(`| ${m.label} | ${b === null ? '-' : m.format(b)} | ${Number.isFinite(peak) ? m.format(peak) : '-'} | ${e === null ? '-' : m.format(e)} | ${a === null ? '-' : m.format(a)} | ${ratio} |`);
  }
  out.push('');
  if (baseline.rssBytes !== null && rssByMinute.length > 0) {
    out.push(`RSS after the stop, nothing forced: ${rssByMinute.map((s) => `${((s.t - lastStop) / 60).toFixed(1)} min ${MB(s.rssBytes!)} (${(s.rssBytes! / baseline.rssBytes!).toFixed(2)} ×)`).join(', ')}.`);
    out.push('');
  }
  // The table's peak is under load only; the drain (every client QUITs at once) is reported here.
  const stallAfter = settling.filter((s) => s.eventLoopMaxSeconds !== null).reduce<Sample | undefined>((worst, s) => (worst === undefined || s.eventLoopMaxSeconds! > worst.eventLoopMaxSeconds! ? s : worst), undefined);
  if (stallAfter !== undefined) {
    out.push(`Largest event-loop delay after the stop, before anything was forced: ${MS(stallAfter.eventLoopMaxSeconds!)} (max of the 10 s window ending ${(stallAfter.t - lastStop).toFixed(0)} s after the stop).`);
    out.push('');
  }
  const je = run.jemalloc;
  if (je?.baseline !== undefined && je.after !== undefined) {
    const fields: [keyof JemallocStats, string][] = [['allocated', 'allocated by the program'], ['active', 'in active pages'], ['metadata', "the allocator's metadata"], ['tcacheBytes', "in the threads' caches"], ['resident', 'resident']];
    out.push(`jemalloc's own counts (mallctl through gdb), at the baseline and with the after-load sample: ${fields.map(([k, label]) => `${label} ${MB(je.baseline![k])} and ${MB(je.after![k])}`).join(', ')}.`);
    if (je.afterGc !== undefined) out.push(`Allocated by the program after the final full GC (the native memory dead objects held is freed then): ${MB(je.afterGc.allocated)}, against ${MB(je.baseline.allocated)} at the baseline.`);
    const each = je.afterEachLoad ?? [];
    if (each.length > 1) out.push(`Allocated by the program after each of the ${each.length} loads (the same process, each load followed by its settle): ${each.map((s) => (s === undefined ? '-' : MB(s.allocated))).join(', ')}.`);
    out.push('');
  }
  if (afterTrim !== undefined) {
    const kept = (after.rssBytes ?? 0) - (afterTrim.rssBytes ?? 0);
    out.push(`malloc_trim(0), called in popwarden through gdb after the load, took its RSS from ${MB(after.rssBytes ?? 0)} to ${MB(afterTrim.rssBytes ?? 0)} `
      + `(${((afterTrim.rssBytes ?? 0) / (baseline.rssBytes ?? 1)).toFixed(2)} × the baseline): `
      + (kept > 5e6 ? "what it gave back was freed native memory that glibc's allocator had kept for reuse, not memory in use."
        : 'nothing to give back (glibc\'s heap is not in use under jemalloc, and jemalloc had returned what was freed).'));
    out.push('');
  }
  const settled = samples.filter((s) => !s.fullGc && s.t > afterGc.t).at(-1);
  if (settled !== undefined && settled.rssBytes !== null && baseline.rssBytes !== null) {
    out.push(`RSS ${(settled.t - afterGc.t).toFixed(0)} s after the final full GC (and the snapshot, whose buffers the allocator may not have returned yet): ${MB(settled.rssBytes)}, `
      + `${(settled.rssBytes / baseline.rssBytes).toFixed(2)} × the baseline.`);
    out.push('');
  }
  out.push(`Sessions open from 90 s after the start of the load to its end: ${Math.min(...steadySessions)} to ${Math.max(...steadySessions)}. popwarden used ${(cpuDuringLoad * 100).toFixed(0)}% of one core on average under load, `
    + `${((endOfLoad.cpuSeconds - firstLoad.cpuSeconds) * 1000 / Math.max(1, clients.sessionsStarted)).toFixed(1)} ms of CPU per session started. `
    + `The Redis store was reported down in ${samples.filter((s) => s.storeUp === 0).length} of ${samples.length} samples.`);
  out.push('');
  out.push('## What the clients saw');
  out.push('');
  out.push(`${clients.sessionsStarted} sessions opened, ${clients.sessionsQuit} ended with QUIT +OK; ${clients.loginsOk} good logins, ${clients.loginsRefused} stale-password logins refused (as they should be); `
    + `${clients.retr} RETR (${(clients.retrBytes / 1e9).toFixed(2)} GB), ${clients.dele} DELE taken back with RSET. Load from ${loadStart.toFixed(0)} s to ${loadStop.toFixed(0)} s.`);
  out.push('');
  out.push(clientErrors.length === 0 ? 'Client errors: none.' : `Client errors (${clientErrors.reduce((a, [, n]) => a + n, 0)}): ${clientErrors.map(([k, n]) => `${n} × \`${k}\``).join('; ')}.`);
  out.push('');
  out.push('## What the logs say');
  out.push('');
  out.push(`popwarden logged ${closes.length} \`session closed\`: ${reasons.map(([r, n]) => `${n} ${r}`).join(', ')}. **Sessions lost (closed for any reason but quit): ${lost}.**`);
  out.push('');
  out.push(`Logins: ${loginLine('success')}, ${loginLine('failure')}${otherResults.length === 0 ? '' : `, ${otherResults.map(([r, n]) => `${n} ${r}`).join(', ')}`} (durationMs of popwarden's login attempt lines).`);
  out.push('');
  out.push(`Reload: ${reloads.map((l) => `"${l.msg}"`).join('; ')}. Redis: popwarden logged the rate-limit store down and back ${outages.length} time${outages.length === 1 ? '' : 's'} `
    + `(outages of ${outages[0] ?? 0} to ${outages.at(-1) ?? 0} ms, median ${quantile(outages, 0.5)} ms; the planned restart is one of them, the others calls that took longer than the store timeout).`);
  out.push('');
  out.push(`Lines at error or fatal: ${errors.length}${errors.length === 0 ? '' : ` (${tally(errors.map((l) => l.msg ?? '')).map(([k, n]) => `${n} × ${k}`).join('; ')})`}. `
    + `Warnings: ${warnings.length === 0 ? 'none' : warnings.map(([k, n]) => `${n} × "${k}"`).join('; ')}. Lines that were not JSON: ${popwarden.unparsed}.`);
  out.push('');
  if (run.dovecotLog === undefined) out.push("Dovecot's log was not kept with this run.");
  else out.push(`Dovecot's log: ${dovecotProblems.length} lines with Error, Fatal or Panic${dovecotProblems.length === 0 ? '' : `, e.g. \`${dovecotProblems[0]!.slice(0, 200)}\``}.`);
  out.push('');
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [from = 'bench/results/soak.json', logs = '.'] = process.argv.slice(2);
  const run = JSON.parse(readFileSync(from, 'utf8')) as Omit<SoakRun, 'popwardenLog' | 'dovecotLog'>;
  process.stdout.write(summarize({ ...run, popwardenLog: readFileSync(`${logs}/popwarden.log`, 'utf8'), dovecotLog: existsSync(`${logs}/dovecot.log`) ? readFileSync(`${logs}/dovecot.log`, 'utf8') : undefined }));
}
