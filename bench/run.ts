/**
 * `npm run bench`: popwarden against the front ends an administrator would pick instead
 * (stunnel4, nginx's mail proxy) and the backend itself, in one run, in front of one Dovecot,
 * with one ECDSA P-256 certificate and the same load. See bench/README.md for how to read it.
 *
 *   node --import tsx bench/run.ts [--quick] [--only abcde] [--reps N] [--no-pin] [--profile]
 *     [--targets popwarden,stunnel,nginx,node,direct] [--env NAME=VALUE]
 *
 * Prints a Markdown report and writes it to bench/results/latest.md (a --quick or --only run
 * writes bench/results/partial.md instead, so the full result stays).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/harness/redis.js';
import { unitEnvironmentHere } from '../test/harness/systemd-unit.js';
import { ACCOUNTS, passwordOf, startBenchBackend } from './backend.js';
import { PopClient } from './pop-client.js';
import { heapSnapshot, killOnExit } from './proc.js';
import { goalTable, median, Results } from './report.js';
import { benchEnvironment, directTarget, startAuthHttp, startBareRelay, startNginx, startPopwarden, startStunnel, TARGET_NAMES, versions, type Target } from './targets.js';
import { bigRetr, fetchSessions, idleSessions, logins, noops, openSslReference, warmUp, type Sizes } from './workloads.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string', default: 'abcde' },
    reps: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    /** NAME=VALUE for popwarden's environment, over the systemd unit's (`LD_PRELOAD=` runs it on glibc), repeatable. */
    env: { type: 'string', multiple: true, default: [] },
    /**
     * Which targets, comma-separated; `node` (not measured by default) is bench/bare-tls-relay.mjs,
     * a node:tls relay with no POP3 code, run like popwarden: Node's floor under each measure.
     */
    targets: { type: 'string', default: 'popwarden,stunnel,nginx,direct' },
  },
});
const quick = values.quick === true;
const only = new Set(values.only.toLowerCase().replace(/[^a-e]/g, ''));
const reps = Number(values.reps ?? (quick ? 1 : 3));
const chosen = new Set(values.targets.split(',').map((name) => name.trim()));
if (only.size === 0 || !Number.isInteger(reps) || reps < 1 || reps > 20 || ![...chosen].every((name) => (TARGET_NAMES as readonly string[]).includes(name))) {
  console.error(`usage: run.ts [--quick] [--only abcde] [--reps 1..20] [--no-pin] [--profile] [--targets ${TARGET_NAMES.join(',')}] [--env NAME=VALUE]`);
  process.exit(2);
}

const sizes: Sizes = quick
  ? { reps, bigRetrs: 1, logins: new Map([[8, 100], [32, 160]]), noops: new Map([[1, 500], [20, 1_000]]), idleSessions: [200, 1_000], fetchConcurrency: [1, 8], fetchRounds: { max: 3, seconds: 1 }, sTimeSeconds: 2 }
  : { reps, bigRetrs: 3, logins: new Map([[8, 400], [32, 640]]), noops: new Map([[1, 5_000], [20, 10_000]]), idleSessions: [1_000, 5_000], fetchConcurrency: [1, 8], fetchRounds: { max: 20, seconds: 3 }, sTimeSeconds: 5 };

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const missing = [
  ['dist/cli.js', existsSync(join(root, 'dist/cli.js')), 'npm run build'],
  ['stunnel4', existsSync('/usr/bin/stunnel4'), 'apt-get install stunnel4'],
  ['nginx mail module', existsSync('/usr/lib/nginx/modules/ngx_mail_module.so'), 'apt-get install nginx-light libnginx-mod-mail'],
  ['dovecot pop3', existsSync('/usr/lib/dovecot/pop3'), 'apt-get install dovecot-core dovecot-pop3d'],
  ['redis-server', existsSync('/usr/bin/redis-server'), 'apt-get install redis-server'],
].filter(([, present]) => present !== true);
if (missing.length > 0) {
  console.error(`bench: missing ${missing.map(([what, , fix]) => `${what} (${fix})`).join(', ')}; see bench/README.md`);
  process.exit(1);
}

process.chdir(root);
const began = Date.now();
const log = (line: string): void => console.error(`[bench ${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const env = benchEnvironment(values['no-pin'] !== true);
const results = new Results();

log('starting Dovecot, Redis, the auth_http endpoint and the front ends');
const backend = await startBenchBackend(env.restWrap);
const redis = await startRedis();
killOnExit(redis.pid);
const authHttp = await startAuthHttp(env, backend.port);
// --profile: every popwarden process writes a CPU profile and a heap profile when it stops, and
// a heap snapshot on SIGUSR2 (sent while it holds the most idle sessions in workload d).
const profileDir = join(here, 'results', 'profiles');
const profiling = values.profile === true;
const nodeOptions = profiling
  ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--heap-prof', `--heap-prof-dir=${profileDir}`, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profileDir}`]
  : [];
// popwarden as its systemd unit runs it (jemalloc, where libjemalloc2 is installed), as the soak
// does, then --env on top (to compare allocators).
const popwardenEnv: Record<string, string> = { ...unitEnvironmentHere(), ...Object.fromEntries(values.env!.map((pair) => {
  const at = pair.indexOf('=');
  if (at < 1) throw new Error(`--env wants NAME=VALUE, not ${pair}`);
  return [pair.slice(0, at), pair.slice(at + 1)];
})) };
const starters = new Map<string, () => Promise<Target>>([
  ['popwarden', () => startPopwarden(env, backend.port, redis.url, nodeOptions, 'dist/cli.js', popwardenEnv)],
  ['stunnel', () => startStunnel(env, backend.port)],
  ['nginx', () => startNginx(env, authHttp.port, authHttp.pid)],
  // The same node flags (the shebang's) and environment (the allocator) as popwarden.
  ['node', () => startBareRelay(env, backend.port, 'dist/cli.js', popwardenEnv)],
].filter(([name]) => chosen.has(name as string)) as [string, () => Promise<Target>][]);
const targets: Target[] = [];
for (const start of starters.values()) targets.push(await start());
if (chosen.has('direct')) targets.push(directTarget(backend.port));

// One session of each kind through each target first: Dovecot indexes the maildrops, every
// process loads what it loads once, and a broken target fails here rather than mid-table.
for (const target of targets) {
  const client = await PopClient.login({ port: target.port, tls: target.tls, ca: env.ca }, ACCOUNTS.big, passwordOf(ACCOUNTS.big));
  await client.ok('LIST', true);
  await client.quit();
  const bulk = await PopClient.login({ port: target.port, tls: target.tls, ca: env.ca }, ACCOUNTS.bulk, passwordOf(ACCOUNTS.bulk));
  await bulk.ok('UIDL', true);
  await bulk.quit();
}

if ([...'eabc'].some((letter) => only.has(letter))) {
  log('warm-up: fetch sessions and NOOPs through every target, unmeasured');
  await warmUp(env, targets);
}

const workloads: [string, string, () => Promise<void>][] = [
  ['e', 'fetchmail-like sessions', () => fetchSessions(env, targets, sizes, results)],
  ['a', 'big RETR', () => bigRetr(env, targets, sizes, results)],
  ['b', 'logins, and the OpenSSL handshake reference', async () => {
    await logins(env, targets, sizes, results);
    await openSslReference(env, sizes, results);
  }],
  ['c', 'NOOP round trips', () => noops(env, targets, sizes, results)],
];
for (const [letter, what, run] of workloads) {
  if (!only.has(letter)) continue;
  log(`(${letter}) ${what}`);
  try {
    await run();
  } catch (error) {
    results.notes.push(`(${letter}) stopped early: ${(error as Error).message}`);
    log(`(${letter}) failed: ${(error as Error).message}`);
  }
}
for (const target of targets) await target.stop();
if (only.has('d')) {
  log('(d) idle sessions, a fresh process of each proxy');
  try {
    await idleSessions(env, starters, sizes, results, async (target) => {
      if (profiling && target.name === 'popwarden') log(`heap snapshot: ${await heapSnapshot(target.pid!, profileDir)}`);
    });
  } catch (error) {
    results.notes.push(`(d) stopped early: ${(error as Error).message}`);
    log(`(d) failed: ${(error as Error).message}`);
  }
}
await authHttp.stop();
await redis.stop();
await backend.stop();

const v = versions();
let commit = 'unknown';
try {
  commit = execFileSync('git', ['describe', '--always', '--dirty'], { encoding: 'utf8' }).trim();
} catch {
  // not a git checkout
}
const report = [
  `## popwarden against stunnel and nginx (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
  '',
  `Machine: ${v.cpu} (nproc ${cpus().length}), Linux ${v.kernel}; Node ${v.node} (its OpenSSL ${process.versions.openssl}), ` +
    `system OpenSSL ${v.openssl}, stunnel ${v.stunnel}, nginx ${v.nginx}, Dovecot ${v.dovecot}, Redis ${v.redis}; popwarden ${commit}, ` +
    `with the systemd unit's environment (${Object.entries(popwardenEnv).map(([k, val]) => `${k}=${val}`).join(' ') || 'none here'}).`,
  `Run: ${quick ? '--quick, ' : ''}workloads ${[...only].sort().join('')}, targets ${[...chosen].join(', ')}, ${reps} repetition${reps > 1 ? 's' : ''} ` +
    `(targets in rotated order), ${values['no-pin'] === true ? 'no pinning' : 'front ends pinned to core 0, everything else to core 1'}; ` +
    `${((Date.now() - began) / 60_000).toFixed(1)} minutes. Cells: median <sub>min–max</sub> over the repetitions.`,
  '',
  results.table(),
  '',
  ...(results.openSslHandshakeUs.length > 0
    ? [`OpenSSL's own TLS 1.3 server handshake (\`openssl s_server\` against \`openssl s_time -new\`, same certificate and core): ` +
        `${median(results.openSslHandshakeUs).toFixed(0)} µs of CPU per handshake.`, '']
    : []),
  '### Issue 10 targets',
  '',
  goalTable(results),
  ...(results.notes.length > 0 ? ['', ...results.notes.map((note) => `- ${note}`)] : []),
  '',
  '### Summary (medians; what the README shows)',
  '',
  results.summary(),
  '',
].join('\n');
console.log(report);
const resultsDir = join(here, 'results');
mkdirSync(resultsDir, { recursive: true });
const full = !quick && only.size === 5 && ['popwarden', 'stunnel', 'nginx', 'direct'].every((name) => chosen.has(name));
writeFileSync(join(resultsDir, full ? 'latest.md' : 'partial.md'), report);
log(`written to bench/results/${full ? 'latest.md' : 'partial.md'}`);
process.exit(0);
