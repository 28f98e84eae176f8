/**
 * What each allocator costs popwarden per session (issue 14 point 4, the choice behind the systemd
 * unit's LD_PRELOAD): CPU (user + system, from /proc), memory system calls (mmap, munmap, brk,
 * madvise, mremap, mprotect: strace -c in a second pass, since tracing slows the process) and
 * the RSS after the sessions. Each session: TLS, USER/PASS, STAT, RETR of an everyday mail and of
 * a 100 KB one, QUIT, CONCURRENCY at a time, against Dovecot.
 *
 *   node --import tsx bench/allocators.ts [--sessions 400]      (after npm run build)
 *
 * Writes bench/results/allocators.md. Not part of CI.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/harness/redis.js';
import { unitEnvironment } from '../test/harness/systemd-unit.js';
import { benchAccount, passwordOf, smallMessage, startBenchBackend } from './backend.js';
import { PopClient } from './pop-client.js';
import { cpuSeconds, killOnExit } from './proc.js';
import { benchEnvironment, startPopwarden } from './targets.js';

const { values } = parseArgs({ options: { sessions: { type: 'string', default: '400' }, out: { type: 'string', default: 'bench/results/allocators.md' } } });
const SESSIONS = Number(values.sessions);
const CONCURRENCY = 8;
const USERS = 4;
const MEMORY_CALLS = 'mmap,munmap,brk,madvise,mremap,mprotect';

const VARIANTS: readonly { name: string; env: Record<string, string> }[] = [
  { name: 'glibc malloc (defaults)', env: {} },
  { name: 'glibc, `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536`', env: { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' } },
  { name: 'glibc, `MALLOC_ARENA_MAX=2`', env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'jemalloc (the unit\'s `LD_PRELOAD=libjemalloc.so.2`)', env: { LD_PRELOAD: unitEnvironment()['LD_PRELOAD'] ?? 'libjemalloc.so.2' } },
];

const say = (text: string): void => void process.stderr.write(`[allocators] ${text}\n`);
const hundredKb = (user: string): Buffer => Buffer.from(`From: bench\r\nTo: ${user}\r\nSubject: 100 KB\r\n\r\n${`${'y'.repeat(78)}\r\n`.repeat(1250)}`);
const env = benchEnvironment(false);
const backend = await startBenchBackend(env.restWrap, () =>
  Array.from({ length: USERS }, (_, i) => benchAccount(`user${i + 1}`, [smallMessage(`user${i + 1}`, 1), hundredKb(`user${i + 1}`)])));
const redis = await startRedis();
killOnExit(redis.pid);

/** `count` sessions, CONCURRENCY at a time. */
async function sessions(port: number, count: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const user = `user${(next++ % USERS) + 1}`;
      const client = await PopClient.login({ port, tls: true, ca: env.ca }, user, passwordOf(user));
      await client.ok('STAT');
      await client.ok('RETR 1', true);
      await client.ok('RETR 2', true);
      await client.quit();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/** strace -c's table: total calls. */
async function tracedCalls(pid: number, run: () => Promise<void>): Promise<number> {
  const file = `${env.dir}/strace-${pid}.txt`;
  const strace = spawn('strace', ['-c', '-f', '-e', `trace=${MEMORY_CALLS}`, '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let attached = '';
  await new Promise<void>((resolve) => strace.stderr.on('data', (chunk: Buffer) => ((attached += chunk.toString()), /attached/.test(attached) && resolve())));
  await run();
  const exited = new Promise((resolve) => strace.once('exit', resolve));
  strace.kill('SIGINT');
  await exited;
  return Number(/^\s*\S+\s+\S+\s+\S+\s+(\d+)\s+(?:\d+\s+)?total$/m.exec(readFileSync(file, 'utf8'))?.[1] ?? NaN);
}

const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0) / 1024;
const rows: string[] = [];
for (const variant of VARIANTS) {
  const popwarden = await startPopwarden(env, backend.port, redis.url, [], 'dist/cli.js', variant.env);
  const pid = popwarden.pid!;
  await sessions(popwarden.port, 40);
  const before = cpuSeconds(pid);
  await sessions(popwarden.port, SESSIONS);
  const cpuMs = ((cpuSeconds(pid) - before) * 1000) / SESSIONS;
  const rss = rssMb(pid);
  const calls = await tracedCalls(pid, () => sessions(popwarden.port, SESSIONS));
  rows.push(`| ${variant.name} | ${cpuMs.toFixed(2)} | ${(calls / SESSIONS).toFixed(0)} | ${rss.toFixed(0)} |`);
  say(rows.at(-1)!);
  await popwarden.stop();
}
await redis.stop();
await backend.stop();

const out = [
  `# Allocators: popwarden's cost per session`,
  '',
  `\`node --import tsx bench/allocators.ts --sessions ${SESSIONS}\`, ${new Date().toISOString().slice(0, 16)}Z, Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} at the end (a shared machine).`,
  `Each session: implicit TLS, USER/PASS, STAT, RETR of a 1 KB and a 100 KB mail, QUIT; ${CONCURRENCY} at a time against Dovecot.`,
  `CPU is user + system time from /proc; memory calls (${MEMORY_CALLS}) are counted by strace -c in a second pass of as many sessions.`,
  '',
  '| allocator | CPU ms per session | memory system calls per session | RSS after the first pass (MB) |',
  '|---|---|---|---|',
  ...rows,
  '',
].join('\n');
writeFileSync(values.out!, out);
process.stdout.write(out);
process.exit(0);
