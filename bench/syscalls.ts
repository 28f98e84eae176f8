/**
 * What one command costs popwarden and stunnel below the POP3 bytes (issue 10): CPU per command
 * from /proc, user and system apart, with perf's context switches where perf runs; then the
 * system calls per command (`strace -c` on every thread, attached for the counted commands
 * only: counts, unlike times, do not depend on the machine's load) and the sequence of calls of
 * the first few commands (reads, writes and event-loop waits, with their lengths), so an extra
 * write or loop turn shows. On the comparison's Dovecot, with its load client, one session each.
 *
 *   npm run build && node --import tsx bench/syscalls.ts [--noops 5000] [--retrs 1000] [--rounds 3]
 *     [--warm 5000] [--trace 2] [--no-pin] [--cli A/cli.js --cli B/cli.js]
 *
 * Targets: popwarden, stunnel, and bench/bare-tls-relay.mjs (a bare node:tls relay: Node's floor).
 * Workloads: NOOP, and RETR of the `bulk` mailbox's messages in turn (2 to 19 KB). Targets are
 * pinned as in `npm run bench` and alternate, in rotated order, over `--rounds`; each is warmed
 * with `--warm` commands of each kind first (Node's JIT). `--cli` (repeatable) measures other builds
 * of popwarden beside the first, for a before/after in one run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/harness/redis.js';
import { ACCOUNTS, FETCH_MESSAGES, passwordOf, startBenchBackend } from './backend.js';
import { PopClient } from './pop-client.js';
import { cpuSecondsSplit, killOnExit } from './proc.js';
import { unitEnvironmentHere } from '../test/harness/systemd-unit.js';
import { benchEnvironment, startBareRelay, startPopwarden, startStunnel, type Target } from './targets.js';

const { values } = parseArgs({
  options: {
    noops: { type: 'string', default: '5000' },
    retrs: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
    warm: { type: 'string', default: '5000' },
    trace: { type: 'string', default: '2' },
    'no-pin': { type: 'boolean', default: false },
    cli: { type: 'string', multiple: true, default: [] },
  },
});
const noops = Number(values.noops);
const retrs = Number(values.retrs);
const rounds = Number(values.rounds);
const warm = Number(values.warm);
const traced = Number(values.trace);
const builds = values.cli.length > 0 ? values.cli : ['dist/cli.js'];

/** The system calls the sequence shows (`strace -c` counts every call). */
const TRACED_CALLS = 'read,write,writev,sendmsg,sendto,recvfrom,recvmsg,epoll_wait,epoll_pwait,epoll_ctl,poll,ppoll,select,pselect6,getpeername,getsockname,setsockopt,futex,mprotect,madvise';

const outDir = mkdtempSync(join(tmpdir(), 'popwarden-syscalls-'));
process.on('exit', () => rmSync(outDir, { recursive: true, force: true }));
let outputs = 0;

/** strace attached to `pid` and all its threads (-f); resolves once they are traced. stop() returns its output. */
async function attach(pid: number, args: readonly string[]): Promise<{ stop(): Promise<string> }> {
  const output = join(outDir, `strace-${outputs++}.txt`);
  const child = spawn('strace', ['-o', output, '-f', ...args, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  killOnExit(child.pid);
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('attached')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`strace exited with ${code}: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop() {
      child.kill('SIGINT');
      await exited;
      return readFileSync(output, 'latin1');
    },
  };
}

/** `perf stat` on `pid` (every thread), if perf is there: context switches and task clock per command. */
async function attachPerf(pid: number): Promise<{ stop(commands: number): Promise<Map<string, number>> }> {
  const output = join(outDir, `perf-${outputs++}.txt`);
  const child = spawn('perf', ['stat', '-e', 'task-clock,context-switches,cpu-migrations', '-x', ',', '-o', output, '-p', String(pid)], { stdio: 'ignore' });
  killOnExit(child.pid);
  const failed = await Promise.race([
    new Promise<boolean>((resolve) => child.once('error', () => resolve(true))),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300)), // perf needs a moment to attach
  ]);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async stop(commands) {
      if (failed) return new Map();
      child.kill('SIGINT');
      await exited;
      // CSV rows: value, unit, event name, ...; task-clock is in ms.
      const rows = readFileSync(output, 'latin1').split('\n').map((line) => line.split(',')).filter((row) => row.length > 3 && row[0] !== '');
      return new Map(rows.map((row) => [row[2]!, (Number(row[0]) * (row[2] === 'task-clock' ? 1_000 : 1)) / commands]));
    },
  };
}

/** `strace -c`'s table as calls per command, the larger first. */
function perCommand(summary: string, commands: number): string {
  const rows: string[] = [];
  for (const line of summary.split('\n')) {
    const match = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$/.exec(line);
    if (match === null || match[3] === 'total') continue;
    rows.push(`${match[3]} ${(Number(match[1]) / commands).toFixed(2)}${match[2] === undefined ? '' : ` (${match[2]} errors)`}`);
  }
  return rows.join(', ');
}

/** One measured workload on one target: a command to repeat on an open session. */
interface Workload {
  readonly label: string;
  readonly one: () => Promise<void>;
}

/** CPU per command from /proc (user and system apart) and perf's context switches, with nothing attached but perf. */
async function costPerCommand(pid: number, commands: number, one: () => Promise<void>): Promise<{ user: number; system: number; perf: Map<string, number> }> {
  const perf = await attachPerf(pid);
  const before = cpuSecondsSplit(pid);
  for (let i = 0; i < commands; i++) await one();
  const after = cpuSecondsSplit(pid);
  return { user: ((after.user - before.user) * 1e6) / commands, system: ((after.system - before.system) * 1e6) / commands, perf: await perf.stop(commands) };
}

/** The system calls of `commands` commands (strace -c), then the sequence of the first few. */
async function syscallsPerCommand(name: string, pid: number, workload: Workload, commands: number): Promise<void> {
  const counting = await attach(pid, ['-c']);
  for (let i = 0; i < commands; i++) await workload.one();
  const summary = await counting.stop();
  console.log(`${name} ${workload.label}: system calls per command: ${perCommand(summary, commands)}`);
  if (traced === 0) return;
  const tracing = await attach(pid, ['-e', `trace=${TRACED_CALLS}`, '-e', 'abbrev=all', '-s', '0']);
  for (let i = 0; i < traced; i++) await workload.one();
  const trace = await tracing.stop();
  // The threads that only sat in a wait while attached say nothing about the commands.
  const lines = trace.split('\n').filter((line) => line !== '' && !/attached|detached|resumed>\s*\)\s*= \?|^strace:|^\d+\s+futex\(.*<unfinished/.test(line));
  console.log(`  the first ${traced}:\n${lines.map((line) => `    ${line}`).join('\n')}`);
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const env = benchEnvironment(values['no-pin'] !== true);
const backend = await startBenchBackend(env.restWrap);
const redis = await startRedis();
killOnExit(redis.pid);
const targets: { name: string; target: Target }[] = [];
for (const cli of builds) {
  targets.push({ name: builds.length > 1 ? `popwarden ${cli}` : 'popwarden', target: await startPopwarden(env, backend.port, redis.url, [], cli, unitEnvironmentHere()) });
}
targets.push({ name: 'stunnel', target: await startStunnel(env, backend.port) });
targets.push({ name: 'bare node:tls relay', target: await startBareRelay(env, backend.port, builds[0]!, unitEnvironmentHere()) });
try {
  // One NOOP session and one RETR session per target, open for the whole run.
  const workloads = new Map<string, Workload[]>();
  for (const { name, target } of targets) {
    const endpoint = { port: target.port, tls: true, ca: env.ca };
    const small = await PopClient.login(endpoint, ACCOUNTS.small, passwordOf(ACCOUNTS.small));
    const bulk = await PopClient.login(endpoint, ACCOUNTS.bulk, passwordOf(ACCOUNTS.bulk));
    let n = 0;
    const list: Workload[] = [
      { label: 'NOOP', one: async () => void (await small.ok('NOOP')) },
      // The 200 bulk messages (2 to 19 KB, about 10 KB) in turn, round and round.
      { label: 'RETR of a ~10 KB message', one: async () => void (await bulk.ok(`RETR ${(n++ % FETCH_MESSAGES) + 1}`, true)) },
    ];
    // Warm: V8 still optimises popwarden's path over its first ~8,000 commands (--trace-opt).
    for (const workload of list) for (let i = 0; i < warm; i++) await workload.one();
    workloads.set(name, list);
  }
  const counts = [noops, retrs];
  const results = new Map<string, { user: number[]; system: number[]; perf: Map<string, number>[] }>();
  for (let round = 0; round < rounds; round++) {
    for (let t = 0; t < targets.length; t++) {
      const { name, target } = targets[(t + round) % targets.length]!;
      for (const [w, workload] of workloads.get(name)!.entries()) {
        const cost = await costPerCommand(target.pid!, counts[w]!, workload.one);
        const key = `${name} ${workload.label}`;
        const entry = results.get(key) ?? { user: [], system: [], perf: [] };
        entry.user.push(cost.user);
        entry.system.push(cost.system);
        entry.perf.push(cost.perf);
        results.set(key, entry);
      }
    }
  }
  const loadAverage = readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ');
  console.log(`CPU per command, median of ${rounds} rounds (${noops} NOOPs, ${retrs} RETRs each; load average ${loadAverage}):`);
  for (const [key, entry] of results) {
    const user = median(entry.user);
    const system = median(entry.system);
    const perf = [...(entry.perf[0]?.keys() ?? [])].map((event) => {
      const value = median(entry.perf.map((round) => round.get(event) ?? Number.NaN));
      return event === 'task-clock' ? `task clock ${value.toFixed(0)} µs` : `${event} ${value.toFixed(2)}`;
    });
    console.log(`  ${key}: ${(user + system).toFixed(0)} µs (user ${user.toFixed(0)}, system ${system.toFixed(0)}; rounds ${entry.user.map((u, i) => (u + entry.system[i]!).toFixed(0)).join(' ')})` +
      (perf.length > 0 ? `; perf, per command: ${perf.join(', ')}` : ''));
  }
  for (const { name, target } of targets) {
    const [noop, retr] = workloads.get(name)!;
    await syscallsPerCommand(name, target.pid!, noop!, Math.min(noops, 1_000));
    await syscallsPerCommand(name, target.pid!, retr!, Math.min(retrs, FETCH_MESSAGES));
  }
} finally {
  for (const { target } of targets) await target.stop();
  await redis.stop();
  await backend.stop();
}
process.exit(0);
