/**
 * What one login costs popwarden, beside stunnel, on the setup of `npm run bench -- --only b`
 * (bench Dovecot, a real redis-server, popwarden with the Redis limiter and the bench's flags,
 * front ends pinned to core 0): CPU µs per login of each front end, read from /proc, rounds
 * alternating between them, and the Redis commands popwarden issues per login (INFO
 * commandstats before and after). Quicker than the whole (b) workload, and it can profile.
 *
 *   npm run build && node --import tsx bench/profile-login.ts [--workers 8] [--logins 600] [--rounds 3]
 *     [--cpu-prof DIR] [--no-pin] [--cli PATH]
 *
 * --cpu-prof DIR starts popwarden with `node --cpu-prof` (written when it stops); --cli PATH runs
 * another build (a copy of dist/ from an earlier commit, for A/B runs in one go).
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/harness/redis.js';
import { ACCOUNTS, passwordOf, startBenchBackend } from './backend.js';
import { PopClient } from './pop-client.js';
import { cpuSeconds, killOnExit } from './proc.js';
import { median } from './report.js';
import { benchEnvironment, startPopwarden, startStunnel, type Target } from './targets.js';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '8' },
    logins: { type: 'string', default: '600' },
    rounds: { type: 'string', default: '3' },
    'cpu-prof': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    cli: { type: 'string', multiple: true, default: [] },
  },
});
const workers = Number(values.workers);
const total = Number(values.logins);
const rounds = Number(values.rounds);

const env = benchEnvironment(values['no-pin'] !== true);
const backend = await startBenchBackend(env.restWrap);
const redis = await startRedis();
killOnExit(redis.pid);
const profile = values['cpu-prof'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`];
const builds = values.cli.length > 0 ? values.cli : ['dist/cli.js'];
const targets: { label: string; target: Target }[] = [];
for (const cli of builds) targets.push({ label: `popwarden ${cli}`, target: await startPopwarden(env, backend.port, redis.url, profile, cli) });
targets.push({ label: 'stunnel', target: await startStunnel(env, backend.port) });

const endpoint = (target: Target) => ({ port: target.port, tls: true, ca: env.ca });
const login = async (target: Target): Promise<void> => {
  const client = await PopClient.login(endpoint(target), ACCOUNTS.small, passwordOf(ACCOUNTS.small));
  await client.quit();
};

/** Calls per Redis command since the last reset, from INFO commandstats. */
async function commandStats(): Promise<Map<string, number>> {
  const text = await redis.cli('INFO', 'commandstats');
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]));
  return calls;
}

for (const { target } of targets) for (let i = 0; i < 20; i++) await login(target); // warm-up
const cpu = new Map<string, number[]>();
const rates = new Map<string, number[]>();
const loads: number[] = [];
let redisPerLogin = '';
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < targets.length; i++) {
    const { label, target } = targets[(i + round) % targets.length]!;
    await redis.cli('CONFIG', 'RESETSTAT');
    const before = cpuSeconds(target.pid!);
    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: workers }, async () => {
      while (next++ < total) await login(target);
    }));
    const seconds = (performance.now() - started) / 1000;
    const used = cpuSeconds(target.pid!) - before;
    cpu.set(label, [...(cpu.get(label) ?? []), (used / total) * 1e6]);
    rates.set(label, [...(rates.get(label) ?? []), total / seconds]);
    if (label.startsWith('popwarden') && round === 0) {
      const stats = [...(await commandStats())].filter(([name]) => !['info', 'config|resetstat', 'config'].includes(name));
      redisPerLogin += `${label}: ${stats.map(([name, calls]) => `${name} ${(calls / total).toFixed(2)}`).join(', ')}\n`;
    }
  }
  loads.push(loadavg()[0]!);
}
for (const { target } of targets) await target.stop();
await redis.stop();
await backend.stop();

console.log(`${total} logins x ${rounds} rounds from ${workers} workers, ${cpus().length} cores, load average ${loads.map((l) => l.toFixed(1)).join(' / ')}`);
for (const { label } of targets) {
  const c = cpu.get(label)!;
  const r = rates.get(label)!;
  console.log(`${label.padEnd(40)} CPU µs/login ${median(c).toFixed(0)} (${c.map((x) => x.toFixed(0)).join(' ')}), logins/s ${median(r).toFixed(0)}`);
}
console.log(`Redis commands per login:\n${redisPerLogin}`);
process.exit(0);
