/**
 * The five workloads of the comparison (issue 10) and the OpenSSL reference. Each repetition
 * visits every target once, in an order rotated by one per repetition, so drift and noise on the
 * shared cores fall on every target alike. Every loop is bounded in count and in time. CPU is the
 * target's process tree, read from /proc before and after the measured part only.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ACCOUNTS, BIG_MESSAGE_BYTES, FETCH_MESSAGES, passwordOf } from './backend.js';
import { PopClient, type Endpoint } from './pop-client.js';
import { cpuSeconds, killOnExit, rssKiB, spawnWrapped } from './proc.js';
import { percentile, type Results } from './report.js';
import type { Environment, Target } from './targets.js';
import { freePort, waitForPort } from '../test/harness/ports.js';

/** How much work each workload does per target and repetition. */
export interface Sizes {
  readonly reps: number;
  /** (a) RETRs of the big message per repetition. */
  readonly bigRetrs: number;
  /** (b) logins per repetition, by number of workers. */
  readonly logins: ReadonlyMap<number, number>;
  /** (c) NOOPs per repetition, by number of sessions. */
  readonly noops: ReadonlyMap<number, number>;
  /** (d) idle sessions at which memory is read, ascending. */
  readonly idleSessions: readonly number[];
  /** (e) concurrent fetch sessions. */
  readonly fetchConcurrency: readonly number[];
  /** (e) rounds of sessions per repetition: at most `max`, none started after `seconds`. */
  readonly fetchRounds: { readonly max: number; readonly seconds: number };
  /** OpenSSL reference: seconds of `openssl s_time`. */
  readonly sTimeSeconds: number;
}

/** No measured part of one target in one repetition may take longer than this. */
const STEP_LIMIT_MS = 120_000;

const endpoint = (env: Environment, target: Target): Endpoint => ({ port: target.port, tls: target.tls, ca: env.ca });

/** Rejects after `ms` (the work itself ends on its sockets' own timeouts). */
async function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: over ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `measure` on every target `reps` times, rotating the order by one each repetition. */
async function rotated(targets: readonly Target[], reps: number, measure: (target: Target) => Promise<void>): Promise<void> {
  for (let rep = 0; rep < reps; rep++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + rep) % targets.length]!;
      await bounded(measure(target), STEP_LIMIT_MS, target.name);
    }
  }
}

/** CPU seconds of the target's tree and of its helper, now (undefined for the direct backend). */
function cpuReading(target: Target): { own: number | undefined; helper: number | undefined } {
  return {
    own: target.pid === undefined ? undefined : cpuSeconds(target.pid),
    helper: target.helperPid === undefined ? undefined : cpuSeconds(target.helperPid),
  };
}

/** Runs `work` while reading the target's CPU around it; returns wall seconds and CPU seconds used. */
async function costed(target: Target, work: () => Promise<void>): Promise<{ seconds: number; cpu: number | undefined; helperCpu: number | undefined }> {
  const before = cpuReading(target);
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  const after = cpuReading(target);
  const delta = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : b - a);
  return { seconds, cpu: delta(before.own, after.own), helperCpu: delta(before.helper, after.helper) };
}

/**
 * `workers` loops sharing `total` iterations of `one`. None starts after the first failure or
 * once the step's time is up, so nothing goes on in the background of the next measure.
 * Resolves with the number of iterations done.
 */
async function pool(workers: number, total: number, one: (index: number) => Promise<void>): Promise<number> {
  const deadline = performance.now() + STEP_LIMIT_MS * 0.9;
  let next = 0;
  let done = 0;
  let failed = false;
  await Promise.all(Array.from({ length: workers }, async () => {
    while (next < total && !failed && performance.now() < deadline) {
      try {
        await one(next++);
        done += 1;
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  }));
  return done;
}

/** (a) RETR of the big message: MB/s (10^6 bytes) and CPU seconds per GB (10^9 bytes). */
export async function bigRetr(env: Environment, targets: readonly Target[], sizes: Sizes, results: Results): Promise<void> {
  const workload = `(a) RETR of a ${BIG_MESSAGE_BYTES / 1024 / 1024} MiB message`;
  await rotated(targets, sizes.reps, async (target) => {
    const client = await PopClient.login(endpoint(env, target), ACCOUNTS.big, passwordOf(ACCOUNTS.big));
    let bytes = 0;
    const cost = await costed(target, async () => {
      for (let i = 0; i < sizes.bigRetrs; i++) bytes += (await client.ok('RETR 1', true)).bodyBytes;
    });
    await client.quit();
    if (bytes < sizes.bigRetrs * BIG_MESSAGE_BYTES) throw new Error(`${target.name}: RETR returned ${bytes} bytes`);
    results.add('a.rate', workload, 'MB/s', 'higher', 0, target.name, bytes / 1e6 / cost.seconds);
    if (cost.cpu !== undefined) results.add('a.cpu', workload, 'CPU seconds per GB', 'lower', 2, target.name, cost.cpu / (bytes / 1e9));
  });
}

/** (b) Full logins (TLS 1.3 handshake, USER, PASS, QUIT) from N workers: logins/s, latency to +OK after PASS, CPU per login. */
export async function logins(env: Environment, targets: readonly Target[], sizes: Sizes, results: Results): Promise<void> {
  const workload = '(b) logins, full TLS handshake each';
  for (const [workers, total] of sizes.logins) {
    await rotated(targets, sizes.reps, async (target) => {
      const latencies: number[] = [];
      let done = 0;
      const cost = await costed(target, async () => {
        done = await pool(workers, total, async () => {
          const started = performance.now();
          const client = await PopClient.login(endpoint(env, target), ACCOUNTS.small, passwordOf(ACCOUNTS.small));
          latencies.push(performance.now() - started);
          await client.quit();
        });
      });
      results.add(`b.rate${workers}`, workload, `logins/s, ${workers} workers`, 'higher', 0, target.name, done / cost.seconds);
      results.add(`b.p50.${workers}`, workload, `login p50 ms, ${workers} workers`, 'lower', 1, target.name, percentile(latencies, 50));
      results.add(`b.p99.${workers}`, workload, `login p99 ms, ${workers} workers`, 'lower', 1, target.name, percentile(latencies, 99));
      if (cost.cpu !== undefined) results.add(`b.cpu${workers}`, workload, `CPU µs per login, ${workers} workers`, 'lower', 0, target.name, (cost.cpu / done) * 1e6);
      if (cost.helperCpu !== undefined) {
        results.add(`b.helper${workers}`, workload, `+ auth_http CPU µs per login, ${workers} workers`, 'lower', 0, target.name, (cost.helperCpu / done) * 1e6);
      }
    });
  }
}

/** (c) NOOP round trips on already logged-in sessions: p50/p99 µs and CPU µs per NOOP. */
export async function noops(env: Environment, targets: readonly Target[], sizes: Sizes, results: Results): Promise<void> {
  const workload = '(c) NOOP round trip';
  for (const [sessions, total] of sizes.noops) {
    const label = `${sessions} session${sessions > 1 ? 's' : ''}`;
    await rotated(targets, sizes.reps, async (target) => {
      const clients = await Promise.all(Array.from({ length: sessions }, () => PopClient.login(endpoint(env, target), ACCOUNTS.small, passwordOf(ACCOUNTS.small))));
      // A few unmeasured round trips first: the first ones of a session pay for warming up.
      for (const client of clients) for (let i = 0; i < 20; i++) await client.ok('NOOP');
      const latencies: number[] = [];
      const perSession = Math.ceil(total / sessions);
      const deadline = performance.now() + STEP_LIMIT_MS * 0.9;
      const cost = await costed(target, () =>
        Promise.all(clients.map(async (client) => {
          for (let i = 0; i < perSession && performance.now() < deadline; i++) {
            const started = performance.now();
            await client.ok('NOOP');
            latencies.push((performance.now() - started) * 1000);
          }
        })).then(() => undefined),
      );
      await Promise.all(clients.map((client) => client.quit()));
      results.add(`c.p50.${sessions}`, workload, `p50 µs, ${label}`, 'lower', 0, target.name, percentile(latencies, 50));
      results.add(`c.p99.${sessions}`, workload, `p99 µs, ${label}`, 'lower', 0, target.name, percentile(latencies, 99));
      if (cost.cpu !== undefined) results.add(`c.cpu.${sessions}`, workload, `CPU µs per NOOP, ${label}`, 'lower', 1, target.name, (cost.cpu / latencies.length) * 1e6);
    });
  }
}

/** One (e) session: login, LIST, UIDL, RETR of every message, QUIT. */
async function fetchSession(env: Environment, target: Target): Promise<void> {
  const client = await PopClient.login(endpoint(env, target), ACCOUNTS.bulk, passwordOf(ACCOUNTS.bulk));
  await client.ok('LIST', true);
  await client.ok('UIDL', true);
  for (let n = 1; n <= FETCH_MESSAGES; n++) await client.ok(`RETR ${n}`, true);
  await client.quit();
}

/**
 * Unmeasured work through every target before the first workload, as a front end that has been
 * running a while has seen: a few fetch sessions and NOOPs, each bounded in count and time. A
 * JIT-compiled proxy (popwarden's V8) keeps optimising its path for its first few thousand
 * commands (bench/README "One command on one session"); without this, workload (e), which runs
 * first, would measure part of that warm-up on popwarden and none on stunnel. The same for all.
 */
export async function warmUp(env: Environment, targets: readonly Target[]): Promise<void> {
  for (const target of targets) {
    const started = performance.now();
    for (let n = 0; n < 10 && performance.now() - started < 3_000; n++) await fetchSession(env, target);
    const client = await PopClient.login(endpoint(env, target), ACCOUNTS.small, passwordOf(ACCOUNTS.small));
    const noopsFrom = performance.now();
    for (let n = 0; n < 3_000 && performance.now() - noopsFrom < 2_000; n++) await client.ok('NOOP');
    await client.quit();
  }
}

/**
 * (e) What fetchmail does with a mailbox of small messages: login, LIST, UIDL, RETR each, QUIT.
 * A repetition is rounds of `concurrency` sessions at once, repeated while it is short (so that
 * a fast target's CPU is more than a few clock ticks), bounded by `sizes.fetchRounds`.
 */
export async function fetchSessions(env: Environment, targets: readonly Target[], sizes: Sizes, results: Results): Promise<void> {
  const workload = `(e) fetchmail-like session (LIST, UIDL, ${FETCH_MESSAGES} × RETR, QUIT)`;
  const session = (target: Target): Promise<void> => fetchSession(env, target);
  for (const concurrency of sizes.fetchConcurrency) {
    const label = `${concurrency} session${concurrency > 1 ? 's' : ''}`;
    await rotated(targets, sizes.reps, async (target) => {
      let sessions = 0;
      const cost = await costed(target, async () => {
        const started = performance.now();
        for (let round = 0; round < sizes.fetchRounds.max && performance.now() - started < sizes.fetchRounds.seconds * 1000; round++) {
          sessions += await pool(concurrency, concurrency, () => session(target));
        }
      });
      results.add(`e.rate${concurrency}`, workload, `messages/s, ${label}`, 'higher', 0, target.name, (sessions * FETCH_MESSAGES) / cost.seconds);
      if (concurrency === 1) results.add('e.seconds', workload, 'seconds per session, 1 session', 'lower', 3, target.name, cost.seconds / sessions);
      if (cost.cpu !== undefined) results.add(`e.cpu${concurrency}`, workload, `CPU ms per session, ${label}`, 'lower', 1, target.name, (cost.cpu / sessions) * 1e3);
    });
  }
}

/** The idle-session generator: a Python process holding TLS sessions, told how many over stdin. */
export function idleGenerator(env: Environment, port: number): { hold(n: number): Promise<{ held: number; failed: number }>; stop(): Promise<void> } {
  const script = fileURLToPath(new URL('./idle-sessions.py', import.meta.url));
  const child = spawn(env.restWrap[0]!, [...env.restWrap.slice(1), 'python3', script, String(port), env.certFile, ACCOUNTS.small, passwordOf(ACCOUNTS.small)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  killOnExit(child.pid);
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    async hold(n) {
      child.stdin!.write(`hold ${n}\n`);
      const line = await lines.next();
      const match = /^held (\d+) failed (\d+)$/.exec(line.done === true ? '' : line.value);
      if (match === null) throw new Error(`idle generator: ${line.done === true ? 'exited' : line.value}`);
      return { held: Number(match[1]), failed: Number(match[2]) };
    },
    async stop() {
      child.stdin!.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
      clearTimeout(timer);
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * (d) RSS per idle authenticated TLS session, on a fresh process of each proxy: the growth from
 * the RSS after one warm-up login to the RSS while N sessions sit idle, divided by N.
 * `atPeak` runs while the most sessions are held (the heap snapshot of a --profile run).
 */
export async function idleSessions(
  env: Environment,
  start: ReadonlyMap<string, () => Promise<Target>>,
  sizes: Sizes,
  results: Results,
  atPeak: (target: Target) => Promise<void> = async () => undefined,
): Promise<void> {
  const workload = '(d) idle authenticated TLS sessions, fresh process';
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1_000));
  for (const [name, startFresh] of start) {
    const target = await startFresh();
    const generator = idleGenerator(env, target.port);
    try {
      const warm = await PopClient.login(endpoint(env, target), ACCOUNTS.small, passwordOf(ACCOUNTS.small));
      await warm.quit();
      await settle();
      const baseline = rssKiB(target.pid!);
      results.add('d.base', workload, 'RSS MiB after one login', 'lower', 1, target.name, baseline / 1024);
      let failed = 0;
      for (const n of sizes.idleSessions) {
        const held = await bounded(generator.hold(n), STEP_LIMIT_MS * 2, `${name}: ${n} idle sessions`);
        failed += held.failed;
        await settle();
        results.add(`d.kib${n}`, workload, `KiB per session at ${n.toLocaleString('en-US')}`, 'lower', 1, target.name, (rssKiB(target.pid!) - baseline) / held.held);
      }
      await atPeak(target);
      results.add('d.failed', workload, `failed sessions of ${sizes.idleSessions.at(-1)!.toLocaleString('en-US')}`, 'lower', 0, target.name, failed);
    } finally {
      await generator.stop();
      await target.stop();
    }
  }
}

/** OpenSSL's own TLS 1.3 server handshake: CPU µs of `openssl s_server` per `s_time -new` connection. */
export async function openSslReference(env: Environment, sizes: Sizes, results: Results): Promise<void> {
  for (let rep = 0; rep < sizes.reps; rep++) {
    const port = await freePort();
    const argv = ['openssl', 's_server', '-quiet', '-tls1_3', '-accept', `127.0.0.1:${port}`, '-cert', env.certFile, '-key', env.keyFile];
    results.openSslHandshakeUs.push(await handshakeCpuUs(env, argv, port, sizes.sTimeSeconds));
  }
}

/**
 * CPU µs that the TLS server `argv` (started pinned like a front end, listening on `port`)
 * spends per full handshake of `openssl s_time -new` for `seconds`. The server is killed after.
 */
export async function handshakeCpuUs(env: Environment, argv: readonly string[], port: number, seconds: number): Promise<number> {
  const server = spawnWrapped(env.frontWrap, argv);
  try {
    await waitForPort('127.0.0.1', port);
    const before = cpuSeconds(server.pid!);
    const client = spawn('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(seconds)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    client.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('latin1')));
    await bounded(new Promise((resolve) => client.once('exit', resolve)), (seconds + 30) * 1000, 'openssl s_time');
    const used = cpuSeconds(server.pid!) - before;
    const connections = Number(/(\d+) connections in [\d.]+ real seconds/.exec(out)?.[1] ?? 0);
    if (connections === 0) throw new Error(`openssl s_time made no connection: ${out.slice(0, 300)}`);
    return (used / connections) * 1e6;
  } finally {
    server.kill('SIGKILL');
  }
}
