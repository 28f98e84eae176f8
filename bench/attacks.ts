/**
 * Attacks while a real user works (issue 14.3): popwarden (dist/, its own process, default limits,
 * Redis limiter, metrics on) in front of Dovecot; one attack at a time from many loopback source
 * addresses, each bounded in time and connections, run from a separate process; meanwhile a
 * legitimate client logs in over implicit TLS and fetches a message byte for byte, again and
 * again. Reports its login latency against the quiet case, and popwarden's RSS, descriptors and
 * event-loop delay (prom-client's monitorEventLoopDelay, read from /metrics).
 *
 *   npm run bench:attacks [-- --seconds 15] [--only slowloris-995,credential-stuffing] [--profile] [--pin]
 *
 * --profile: popwarden writes a CPU profile to bench/results/profiles/ when it stops.
 * --pin: the attacker runs on core 1 and everything else (popwarden, Dovecot, Redis, the
 * legitimate client) on core 0, in every phase, quiet ones included: an attacker on another
 * machine, whose own TLS and CPU do not slow the host it attacks.
 *
 * Prints a Markdown report and writes it to bench/results/attacks.md. Not CI: timings only here;
 * test/e2e/attacks.test.ts checks the functional outcomes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { startRedis } from '../test/harness/redis.js';
import { freePort, waitForPort } from '../test/harness/ports.js';
import {
  ATTACK_KINDS, legitimateFetch, loopbackSources, type AttackKind, type AttackOptions, type AttackReport, type AttackTarget, type LegitResult,
} from '../test/harness/attackers.js';
import { ACCOUNTS, passwordOf, smallMessage, startBenchBackend } from './backend.js';
import { fdCount, percentile, rssBytes } from './lib.js';
import { cpuSeconds, killOnExit, stopTree } from './proc.js';
import { benchEnvironment, versions } from './targets.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '15' }, only: { type: 'string' }, profile: { type: 'boolean', default: false }, pin: { type: 'boolean', default: false } } });
// Read now, at the build this run measures (npm run bench:attacks builds first), not at the end.
const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 3 || seconds > 60) {
  console.error('usage: attacks.ts [--seconds 3..60] [--only kind,kind]');
  process.exit(2);
}
const only = values.only === undefined ? ATTACK_KINDS : (values.only.split(',') as AttackKind[]);
const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
process.chdir(root);
if (!existsSync('dist/cli.js')) throw new Error('run npm run build first');
const began = Date.now();
const log = (line: string): void => console.error(`[attacks ${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${line}`);

/**
 * Each attack's size: a few hundred to a thousand connections, within this machine's descriptor
 * limit (both ends of every connection are on this host: the attacker holds one, popwarden one
 * or two). Sources: 127.1.x.y, never the legitimate client's 127.0.2.x.
 */
const PLAN: Record<AttackKind, Omit<AttackOptions, 'target' | 'durationMs'>> = {
  'slowloris-110': { sources: loopbackSources(1, 100), concurrency: 1_000 },
  'slowloris-995': { sources: loopbackSources(1, 100), concurrency: 1_000 },
  'connection-flood': { sources: loopbackSources(1, 100), concurrency: 200 },
  'tls-handshake-flood': { sources: loopbackSources(1, 64), concurrency: 64 },
  'pipelined-flood': { sources: loopbackSources(1, 20), concurrency: 20, pipelineDepth: 5_000 },
  'oversized-sasl': { sources: loopbackSources(1, 50), concurrency: 50 },
  'garbage-protocols': { sources: loopbackSources(1, 50), concurrency: 50 },
  'credential-stuffing': { sources: loopbackSources(1, 200), concurrency: 200 },
  'one-user-many-addresses': { sources: loopbackSources(1, 200), concurrency: 200, victim: ACCOUNTS.small },
};
/**
 * The legitimate client's addresses, in turn: 4 logins a second would be 240 a minute from one
 * address, over limits.max_new_connections_per_ip_per_minute (60); from 8 it is 30 each.
 */
const LEGIT_SOURCES = Array.from({ length: 8 }, (_, i) => `127.0.2.${i + 1}`);
/** The owner's first login from an address it never used: what a new phone or a trip meets. */
const OWNER_NEW_SOURCE = '127.0.0.3';

const pinned = values.pin === true && cpus().length >= 2;
// Before anything is started: Dovecot, Redis and popwarden inherit core 0; the attacker gets core 1.
if (pinned) execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
const env = benchEnvironment(false);
log('starting Dovecot, Redis and popwarden');
const backend = await startBenchBackend(env.restWrap);
const redis = await startRedis();
killOnExit(redis.pid);
const ports = { tls: await freePort(), stls: await freePort(), metrics: await freePort() };
const popwardenLog = join('/tmp', `popwarden-attacks-${process.pid}.log`);
const profile = values.profile === true ? ['--cpu-prof', `--cpu-prof-dir=${join(here, 'results', 'profiles')}`] : [];
const child: ChildProcess = spawn(process.execPath, [...profile, 'dist/cli.js', '--listen-tls', `127.0.0.1:${ports.tls}`, '--listen-stls', `127.0.0.1:${ports.stls}`,
  '--backend', `127.0.0.1:${backend.port}`, '--cert', env.certFile, '--key', env.keyFile, '--redis', redis.url,
  '--state-dir', env.dir, '--metrics-listen', `127.0.0.1:${ports.metrics}`, '--backend-probe-interval', '0s', '--log-level', 'info'],
{ stdio: ['ignore', 'pipe', 'inherit'] });
child.stdout!.pipe(createWriteStream(popwardenLog));
killOnExit(child.pid);
const pid = child.pid!;
await waitForPort('127.0.0.1', ports.tls, 15_000);
await waitForPort('127.0.0.1', ports.metrics, 15_000);

const target: AttackTarget = { host: '127.0.0.1', tlsPort: ports.tls, stlsPort: ports.stls, caFile: env.certFile };
const owner = { user: ACCOUNTS.small, pass: passwordOf(ACCOUNTS.small) };
const expected = smallMessage(ACCOUNTS.small, 1);

/** popwarden's own metric `name` from /metrics (scraping also resets the event-loop histogram). */
async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
  const found = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(nodejs_eventloop_lag_(?:p99|max)_seconds|process_open_fds|process_resident_memory_bytes) (\S+)$/.exec(line);
    if (match !== null) found.set(match[1]!, Number(match[2]));
  }
  return found;
}

/**
 * The legitimate client, one session after another until `until` resolves, starting one at most
 * every LEGIT_SPACING_MS: a person's client, well under limits.max_new_connections_per_ip (10/s).
 */
const LEGIT_SPACING_MS = 250;
async function legitimateLoop(until: Promise<unknown>): Promise<LegitResult[]> {
  let done = false;
  void until.then(() => (done = true));
  const results: LegitResult[] = [];
  while (!done) {
    const next = new Promise((resolve) => setTimeout(resolve, LEGIT_SPACING_MS));
    results.push(await legitimateFetch(target, owner, expected, LEGIT_SOURCES[results.length % LEGIT_SOURCES.length]!));
    await next;
  }
  return results;
}

/** Waits (bounded) for popwarden's descriptors to come back to `baseline`; returns the last count. */
async function settleDescriptors(baseline: number, ms = 30_000): Promise<number> {
  const deadline = Date.now() + ms;
  let now = fdCount(pid);
  while (now > baseline && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    now = fdCount(pid);
  }
  return now;
}

function runAttackProcess(kind: AttackKind): { done: Promise<AttackReport> } {
  const options: AttackOptions = { ...PLAN[kind], target, durationMs: seconds * 1000 };
  const command = [process.execPath, '--import', 'tsx', 'bench/attack-load.ts', JSON.stringify({ kind, options })];
  const [file, ...args] = pinned ? ['taskset', '-c', '1', ...command] : command;
  const attacker = spawn(file!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  killOnExit(attacker.pid);
  let out = '';
  attacker.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const done = new Promise<AttackReport>((resolve, reject) =>
    attacker.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as AttackReport) : reject(new Error(`attacker ${kind} exited with ${code}`)))),
  );
  return { done };
}

interface Row {
  readonly name: string;
  readonly legit: LegitResult[];
  readonly rssPeak: number;
  readonly fdPeak: number;
  readonly fdAfter: number;
  readonly loopP99: number;
  readonly loopMax: number;
  /** CPU seconds used during the phase by popwarden, Dovecot (every process) and Redis: who paid for the attack. */
  readonly cpu: { readonly popwarden: number; readonly dovecot: number; readonly redis: number };
  readonly report?: AttackReport;
  readonly note?: string;
}

/** One phase: `attack` (or quiet) with the legitimate client working and popwarden sampled. */
async function phase(name: string, attack: AttackKind | undefined, fdBaseline: number): Promise<Row> {
  // A fresh limiter for every phase, and the owner's usual addresses trusted again by a login each.
  await redis.cli('flushall');
  for (const source of LEGIT_SOURCES) await legitimateFetch(target, owner, expected, source);
  await scrape();
  const cpuNow = () => ({ popwarden: cpuSeconds(pid), dovecot: cpuSeconds(backend.pid), redis: cpuSeconds(redis.pid) });
  const cpuBefore = cpuNow();
  let rssPeak = rssBytes(pid);
  let fdPeak = fdCount(pid);
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, rssBytes(pid));
    fdPeak = Math.max(fdPeak, fdCount(pid));
  }, 200);
  const running = attack === undefined ? { done: new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), seconds * 1000)) } : runAttackProcess(attack);
  const [legit, report] = await Promise.all([legitimateLoop(running.done), running.done]);
  clearInterval(sampler);
  const cpuAfter = cpuNow();
  const cpu = { popwarden: cpuAfter.popwarden - cpuBefore.popwarden, dovecot: cpuAfter.dovecot - cpuBefore.dovecot, redis: cpuAfter.redis - cpuBefore.redis };
  const metrics = await scrape();
  let note: string | undefined;
  if (attack === 'one-user-many-addresses') {
    const fresh = await legitimateFetch(target, owner, expected, OWNER_NEW_SOURCE);
    note = `the owner from an address it never used before: ${fresh.failure ?? 'logged in'}`;
  }
  const fdAfter = await settleDescriptors(fdBaseline);
  return {
    name, legit, rssPeak, fdPeak, fdAfter, cpu,
    loopP99: metrics.get('nodejs_eventloop_lag_p99_seconds') ?? Number.NaN,
    loopMax: metrics.get('nodejs_eventloop_lag_max_seconds') ?? Number.NaN,
    ...(report === undefined ? {} : { report }),
    ...(note === undefined ? {} : { note }),
  };
}

// Warm up (JIT, Dovecot's processes) at the legitimate client's pace, then the baseline descriptors.
await legitimateLoop(new Promise((resolve) => setTimeout(resolve, 3_000)));
const fdBaseline = await settleDescriptors(fdCount(pid), 2_000);
const rows: Row[] = [];
log('quiet (before)');
rows.push(await phase('quiet (before)', undefined, fdBaseline));
for (const kind of only) {
  log(kind);
  rows.push(await phase(kind, kind, fdBaseline));
}
log('quiet (after)');
rows.push(await phase('quiet (after)', undefined, fdBaseline));

const logins = (row: Row): number[] => row.legit.filter((r) => r.failure === undefined).map((r) => r.loginMs);
// The quiet reference pools both quiet phases: on a shared machine either alone is a few dozen noisy samples.
const quiet: Row = { ...rows[0]!, name: 'quiet (both)', legit: [...rows[0]!.legit, ...rows.at(-1)!.legit] };
const p = (row: Row, q: number): number => (logins(row).length === 0 ? Number.NaN : percentile(logins(row), q));
const ms = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(1));
const ratio = (x: number, q: number): string => (Number.isNaN(x) ? '-' : (x / p(quiet, q)).toFixed(2));
const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0);
const v = versions();
const out: string[] = [];
out.push(`# Attacks while a real user works (issue 14.3)`);
out.push('');
out.push(`\`npm run bench:attacks -- --seconds ${seconds}${pinned ? ' --pin' : ''}\`, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, popwarden ${commit}.`);
out.push(`Machine: ${v.cpu}, Linux ${v.kernel}, Node ${v.node}, OpenSSL ${v.openssl}, Dovecot ${v.dovecot}, Redis ${v.redis}; ` +
  `**2 cores shared with other sessions** (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end), ` +
  (pinned
    ? 'the attacker pinned to core 1 and popwarden, Dovecot, Redis and the legitimate client to core 0, in every phase: as if the attacker were another machine.'
    : 'nothing pinned: attacker, legitimate client, popwarden, Dovecot and Redis all compete for the same cores, so the ratios are an upper bound of what popwarden alone would cost.'));
out.push('');
out.push(`popwarden runs with its defaults (per-address caps, \`auth_failure_delay\` 2 s, Redis limiter), Dovecot with its per-address auth penalty off as the README says. ` +
  `Each attack runs ${seconds} s from a separate process, from 127.1.x.y; the legitimate client (from 127.0.2.1-8 in turn, each trusted by an earlier login) logs in over implicit TLS ` +
  'with USER/PASS and fetches a message byte for byte, one session after another, at most 4 a second (30 a minute per address, under the 60 allowed). Login = TCP connect to the +OK for PASS. Event-loop delay: ' +
  "prom-client's monitorEventLoopDelay (10 ms resolution, so an idle loop reads about 10 ms), reset at the start of each phase.");
out.push('');
out.push('| phase | legit sessions | failures | login p50 ms | p95 ms | p99 ms | p50 / quiet | p95 / quiet | p99 / quiet | RSS peak MiB | fds peak | fds after | loop p99 ms | loop max ms |');
out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const row of rows) {
  const failures = row.legit.filter((r) => r.failure !== undefined).length;
  out.push(`| ${row.name} | ${row.legit.length} | ${failures} | ${ms(p(row, 50))} | ${ms(p(row, 95))} | ${ms(p(row, 99))} | ` +
    `${ratio(p(row, 50), 50)} | ${ratio(p(row, 95), 95)} | ${ratio(p(row, 99), 99)} | ` +
    `${mib(row.rssPeak)} | ${row.fdPeak} | ${row.fdAfter} | ${(row.loopP99 * 1000).toFixed(1)} | ${(row.loopMax * 1000).toFixed(1)} |`);
}
out.push('');
out.push(`Ratios are to both quiet phases pooled (${logins(quiet).length} logins: p50 ${ms(p(quiet, 50))} ms, p99 ${ms(p(quiet, 99))} ms). ` +
  'With under 100 logins a phase, p99 is the slowest login of the phase and p95 (60 to 70 logins) the third or fourth slowest: one unlucky login sets p99, it takes three or four to move p95.');
out.push('');
out.push('The slowest login of each phase (UTC, to match with popwarden\'s log; the TCP and TLS handshakes and the greeting, then USER/PASS):');
out.push('');
for (const row of rows) {
  const slowest = row.legit.filter((r) => r.failure === undefined).sort((a, b) => b.loginMs - a.loginMs)[0];
  if (slowest === undefined) continue;
  out.push(`- ${row.name}: ${new Date(slowest.startedAt).toISOString().slice(11, 23)}, ${ms(slowest.loginMs)} ms = ${ms(slowest.greetingMs)} to the greeting + ${ms(slowest.loginMs - slowest.greetingMs)} USER/PASS`);
}
out.push('');
out.push(`Baseline: ${fdBaseline} descriptors. What the attackers got (attempts, then outcome × count):`);
out.push('');
for (const row of rows) {
  if (row.report === undefined) {
    const failures = [...new Set(row.legit.filter((r) => r.failure !== undefined).map((r) => r.failure))];
    out.push(`- **${row.name}**: CPU popwarden ${row.cpu.popwarden.toFixed(1)} s, Dovecot ${row.cpu.dovecot.toFixed(1)} s, Redis ${row.cpu.redis.toFixed(1)} s`);
    if (failures.length > 0) out.push(`  - legitimate client failures: ${failures.join('; ')}`);
    continue;
  }
  const outcomes = Object.entries(row.report.outcomes).sort((a, b) => b[1] - a[1]).map(([label, n]) => `${label.replaceAll('|', '/')} × ${n}`).join('; ');
  out.push(`- **${row.name}** (${PLAN[row.report.kind].sources.length} addresses, ${row.report.attempts} attempts): ${outcomes}`);
  out.push(`  - CPU during the phase: popwarden ${row.cpu.popwarden.toFixed(1)} s, Dovecot ${row.cpu.dovecot.toFixed(1)} s, Redis ${row.cpu.redis.toFixed(1)} s`);
  const failures = [...new Set(row.legit.filter((r) => r.failure !== undefined).map((r) => r.failure))];
  if (failures.length > 0) out.push(`  - legitimate client failures: ${failures.join('; ')}`);
  if (row.note !== undefined) out.push(`  - ${row.note}`);
}
const report = out.join('\n');
console.log(report);
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'attacks.md'), `${report}\n`);
await stopTree(pid, child);
await redis.stop();
await backend.stop();
log(`done; popwarden's log: ${popwardenLog}`);
process.exit(0);
