/**
 * The soak (issue 14 point 4): thousands of TLS sessions doing what mail clients do, for a long
 * time, against a real Dovecot, with a real Redis limiter that is restarted in the middle and a
 * SIGHUP reload of popwarden. popwarden runs as it would in production (default limits, a 2 s
 * failure delay, logs at info, metrics on, the environment of contrib/popwarden.service: jemalloc); its RSS, heap, descriptors, event-loop delay and
 * open sessions are read from its /metrics every 10 s, before, during and after the load.
 *
 *   npm run bench:soak -- --minutes 30 --sessions 2000
 *   npm run bench:soak -- --minutes 2 --sessions 300 --settle 1     (a check of the script)
 *
 * Writes bench/results/soak.json (every sample), bench/results/soak.md (the summary) and
 * docs/soak.png (the chart). Not part of CI: its figures depend on the machine.
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, waitForPort } from '../test/harness/ports.js';
import { startRedis } from '../test/harness/redis.js';
import { unitEnvironment } from '../test/harness/systemd-unit.js';
import { benchAccount, smallMessage, startBenchBackend } from './backend.js';
import { SMALL_MESSAGES, type ClientCounts, type ClientPlan } from './endurance-clients.js';
import { summarize, type Event, type Sample } from './endurance-report.js';
import { renderChart } from './endurance-chart.js';
import { jemallocProfileDump, jemallocStats, type JemallocStats } from './jemalloc-stats.js';
import { PopClient } from './pop-client.js';
import { cpuSeconds, heapSnapshot, killOnExit, residentSplit, stopTree } from './proc.js';
import { benchEnvironment, shebangNodeOptions } from './targets.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    sessions: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '3' },
    settle: { type: 'string', default: '3' },
    out: { type: 'string', default: 'bench/results/soak' },
    chart: { type: 'string', default: 'docs/soak.png' },
    /** Keep the heap snapshots in the run's directory (to compare before and after). */
    'keep-snapshots': { type: 'boolean', default: false },
    /** NAME=VALUE for popwarden's environment, over the systemd unit's (an allocator to compare), repeatable. */
    env: { type: 'string', multiple: true, default: [] },
    /**
     * jemalloc heap profiles: popwarden runs with prof:true (one sample per 2^15 bytes allocated)
     * and dumps its live allocations at the baseline and after the load, into the run's directory.
     */
    jeprof: { type: 'boolean', default: false },
    /** Leave out the SIGHUP reload, or the Redis restart (to find which of them leaves something). */
    'no-sighup': { type: 'boolean', default: false },
    'no-redis-restart': { type: 'boolean', default: false },
    /**
     * Run the load (and its settle) this many times on the same process, jemalloc's counts read
     * after each: does a second identical load leave more behind than the first? The summary's
     * table compares the baseline with the state after the last load.
     */
    loads: { type: 'string', default: '1' },
  },
});
const MINUTES = Number(values.minutes);
const GOOD_CLIENTS = Number(values.sessions);
/** About one login in ten fails: stale clients try every 30 to 90 s, good ones log in every ~2 min. */
const STALE_CLIENTS = Math.max(5, Math.round(GOOD_CLIENTS / 10));
const WORKERS = Number(values.workers);
const SETTLE_MINUTES = Number(values.settle);
const LOADS = Number(values.loads);
const USERS = 40;
const STALE_USERS = 20;
const SAMPLE_MS = 10_000;
/** popwarden's descriptor budget on this machine (2 per session: client and backend). */
const POPWARDEN_NOFILE = 9_000;
/** The environment contrib/popwarden.service gives popwarden in production (its allocator), then --env. */
const POPWARDEN_ENV: Record<string, string> = { ...unitEnvironment(), ...Object.fromEntries(values.env!.map((pair) => {
  const at = pair.indexOf('=');
  if (at < 1) throw new Error(`--env wants NAME=VALUE, not ${pair}`);
  return [pair.slice(0, at), pair.slice(at + 1)];
})) };

const say = (text: string): void => void process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A mailbox as a client sees it: SMALL_MESSAGES everyday mails, then one of 100 KB and one of 1 MB. */
function mailbox(user: string): Buffer[] {
  const sized = (n: number, bytes: number): Buffer => {
    const head = `From: soak@popwarden.test\r\nTo: ${user}@popwarden.test\r\nSubject: attachment ${n}\r\n\r\n`;
    const line = `${'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx'}\r\n`;
    return Buffer.from(head + line.repeat(Math.ceil(bytes / line.length)));
  };
  const small = Array.from({ length: SMALL_MESSAGES }, (_, i) => smallMessage(user, i + 1));
  return [...small, sized(SMALL_MESSAGES + 1, 100_000), sized(SMALL_MESSAGES + 2, 1_000_000)];
}

// Registered before anything else, so it runs first when this process exits (a later exit hook
// that throws, such as a temp-dir removal racing a live server, would skip the others).
const ownPids: { pid: number }[] = [];
process.on('exit', () => {
  for (const { pid } of ownPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});
const env = benchEnvironment(false);
const runDir = join('/tmp', 'soak', `run-${Date.now()}`);
mkdirSync(runDir, { recursive: true });
if (values.jeprof === true) POPWARDEN_ENV.MALLOC_CONF = [POPWARDEN_ENV.MALLOC_CONF, `prof:true,lg_prof_sample:15,prof_prefix:${runDir}/jeprof`].filter(Boolean).join(',');
/** A jemalloc heap profile of popwarden now, with --jeprof (its file is the run directory's newest jeprof.*.heap). */
function profileDump(when: string): void {
  if (values.jeprof !== true) return;
  say(jemallocProfileDump(popwardenPid) ? `jemalloc heap profile dumped (${when}) in ${runDir}` : `no jemalloc heap profile (${when})`);
}
say(`writing ${USERS} mailboxes and starting Dovecot, Redis and popwarden (logs in ${runDir})`);
const backend = await startBenchBackend(env.restWrap, () => [
  ...Array.from({ length: USERS }, (_, i) => benchAccount(`user${i + 1}`, mailbox(`user${i + 1}`))),
  ...Array.from({ length: STALE_USERS }, (_, i) => benchAccount(`stale${i + 1}`, [])),
]);
const redis = await startRedis();
killOnExit(redis.pid);
ownPids.push({ get pid() { return redis.pid; } }, { pid: backend.pid });

const tlsPort = await freePort();
const stlsPort = await freePort();
const metricsPort = await freePort();
const logFile = join(runDir, 'popwarden.log');
const logFd = openSync(logFile, 'a');
// Default limits and failure delay, logs at info, metrics on: popwarden as it runs in production.
const popwardenChild: ChildProcess = spawn('sh', ['-c', `ulimit -n ${POPWARDEN_NOFILE} && exec "$@"`, 'sh', process.execPath, ...shebangNodeOptions('dist/cli.js'),
  // A heap snapshot on SIGUSR2 makes V8 collect everything first: the baseline and the after-load
  // figures are both read right after one, so garbage not yet collected does not count.
  '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${runDir}`, 'dist/cli.js',
  '--listen-tls', `127.0.0.1:${tlsPort}`, '--listen-stls', `127.0.0.1:${stlsPort}`, '--backend', `127.0.0.1:${backend.port}`,
  '--cert', env.certFile, '--key', env.keyFile, '--redis', redis.url, '--state-dir', env.dir, '--log-level', 'info',
  '--metrics-listen', `127.0.0.1:${metricsPort}`, '--limits-max-sessions', '4000'], { stdio: ['ignore', logFd, logFd], env: { ...process.env, ...POPWARDEN_ENV } });
const popwardenPid = popwardenChild.pid!;
killOnExit(popwardenPid);
ownPids.push({ pid: popwardenPid });
await waitForPort('127.0.0.1', tlsPort, 15_000);
await waitForPort('127.0.0.1', metricsPort, 15_000);

/** The series of one scrape: `name{labels} value` lines summed per name (labels dropped) and kept per label set. */
async function scrape(): Promise<Map<string, number> | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    const series = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (match === null) continue;
      const [, name, labels, value] = match;
      series.set(name!, (series.get(name!) ?? 0) + Number(value));
      if (labels !== undefined) series.set(`${name}${labels}`, Number(value));
    }
    return series;
  } catch {
    return undefined;
  }
}

/** The clients' counts per load-generator process (keyed by load and process: --loads N adds up). */
const workerCounts = new Map<string, ClientCounts>();
let loadNumber = 0;
const totals = (): ClientCounts => {
  const sum: ClientCounts = { sessionsOpen: 0, sessionsStarted: 0, sessionsQuit: 0, loginsOk: 0, loginsRefused: 0, retr: 0, retrBytes: 0, dele: 0, errors: {} };
  for (const c of workerCounts.values()) {
    for (const key of ['sessionsOpen', 'sessionsStarted', 'sessionsQuit', 'loginsOk', 'loginsRefused', 'retr', 'retrBytes', 'dele'] as const) sum[key] += c[key];
    for (const [k, v] of Object.entries(c.errors)) sum.errors[k] = (sum.errors[k] ?? 0) + v;
  }
  return sum;
};

const started = Date.now();
const samples: Sample[] = [];
const events: Event[] = [];
const mark = (what: Event['what']): void => {
  events.push({ t: (Date.now() - started) / 1000, what });
  say(what);
};
let phase: Sample['phase'] = 'warm-up';

async function takeSample(fullGc = false): Promise<void> {
  const m = await scrape();
  const client = totals();
  const get = (name: string): number | null => m?.get(name) ?? null;
  const resident = residentSplit(popwardenPid);
  const codeSpaces = [get('nodejs_heap_space_size_used_bytes{space="code"}'), get('nodejs_heap_space_size_used_bytes{space="code_large_object"}')];
  samples.push({
    t: (Date.now() - started) / 1000,
    phase,
    fullGc,
    rssBytes: get('process_resident_memory_bytes'),
    heapUsedBytes: get('nodejs_heap_size_used_bytes'),
    heapTotalBytes: get('nodejs_heap_size_total_bytes'),
    heapCodeBytes: codeSpaces.includes(null) ? null : codeSpaces[0]! + codeSpaces[1]!,
    rssAnonBytes: resident?.anonBytes ?? null,
    rssFileBytes: resident?.fileBytes ?? null,
    openFds: get('process_open_fds'),
    eventLoopP99Seconds: get('nodejs_eventloop_lag_p99_seconds'),
    eventLoopMaxSeconds: get('nodejs_eventloop_lag_max_seconds'),
    sessions: get('popwarden_connections_active'),
    storeUp: get('popwarden_ratelimit_store_up'),
    loginAttempts: get('popwarden_login_attempts_total'),
    cpuSeconds: cpuSeconds(popwardenPid),
    load1: loadavg()[0]!,
    clientSessionsOpen: client.sessionsOpen,
    clientErrors: Object.values(client.errors).reduce((a, b) => a + b, 0),
  });
  const s = samples.at(-1)!;
  say(`${phase}${fullGc ? ' (after a full GC)' : ''} t=${s.t.toFixed(0)}s sessions=${s.sessions} rss=${((s.rssBytes ?? 0) / 1e6).toFixed(0)}MB heap=${((s.heapUsedBytes ?? 0) / 1e6).toFixed(0)}MB fds=${s.openFds} loop-p99=${((s.eventLoopP99Seconds ?? 0) * 1000).toFixed(1)}ms load=${s.load1.toFixed(1)} client-errors=${s.clientErrors}`);
}
/** A heap snapshot (a full GC), then a sample. */
async function sampleAfterFullGc(sample = true): Promise<void> {
  const snapshot = await heapSnapshot(popwardenPid, runDir);
  if (values['keep-snapshots'] !== true) rmSync(snapshot);
  if (sample) await takeSample(true);
}
const sampler = setInterval(() => void takeSample(), SAMPLE_MS);

const ca = env.ca;
const clientScript = fileURLToPath(new URL('./endurance-clients.ts', import.meta.url));
/** The client processes, each given its part of `plan` (dealt out by client index). */
function startClients(plan: (w: number) => ClientPlan): ChildProcess[] {
  return Array.from({ length: WORKERS }, (_, w) => {
    const child = fork(clientScript, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    killOnExit(child.pid);
    ownPids.push({ pid: child.pid! });
    const key = `${loadNumber}/${w}`;
    child.on('message', (message: { counts: ClientCounts }) => workerCounts.set(key, message.counts));
    child.send({ plan: plan(w) });
    return child;
  });
}
/** Tells the clients to QUIT and waits for them (one in the middle of a 1 MB RETR finishes it first). */
async function stopClients(children: readonly ChildProcess[]): Promise<void> {
  const finished = children.map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())));
  for (const child of children) child.send({ stop: true });
  await Promise.race([Promise.all(finished), sleep(120_000)]);
}
const dealt = (count: number, w: number): number[] => Array.from({ length: count }, (_, i) => i).filter((i) => i % WORKERS === w);

// The warm-up: a minute of the same mix from WARM_CLIENTS clients (and a few stale ones),
// thinking 1 to 5 s, so every path of the load (implicit TLS and STLS, good and failed logins,
// small and large RETRs, RSET) has run before the baseline. What a process keeps once it has run
// a path (V8's compiled code, the allocator's tables and per-thread caches, OpenSSL's) is paid
// once, whatever the load that follows: a 1-minute run of 60 clients ended with the same native
// memory in use as the 30-minute one of 2,200 (bench/results/soak.md). Measured from after the
// warm-up, "back to the baseline" asks what the long load left behind. Its client counts are
// not the load's (the load's processes start from zero); its sessions are in popwarden's log.
const WARM_CLIENTS = Math.min(60, GOOD_CLIENTS);
mark('warm-up start');
const warmers = startClients((w) => ({
  tlsPort,
  stlsPort,
  ca: ca.toString(),
  good: dealt(WARM_CLIENTS, w),
  stale: dealt(Math.max(3, Math.round(WARM_CLIENTS / 10)), w),
  users: USERS,
  staleUsers: STALE_USERS,
  rampSeconds: 5,
  thinkSeconds: [1, 5],
  pauseSeconds: [1, 3],
  stalePauseSeconds: [5, 10],
}));
await sleep(60_000);
await stopClients(warmers);
workerCounts.clear();
mark('warm-up stop');
phase = 'baseline';
// A first heap snapshot before the baseline, read by nothing. The first snapshot of a process
// makes V8's heap profiler allocate its object-ID map (HeapObjectsMap: an entry per live heap
// object, in a vector and a hash map that never shrink), and keeps it for the process's life, so
// that later snapshots give an object the same ID. With ~16 MB of heap that map is ~12 MB of
// native memory (jeprof: v8::internal::HeapObjectsMap::FindOrAddEntry, under
// node::heap::TriggerHeapSnapshot). Made here, it is in the baseline and in the after-load
// figures alike; made by the baseline's own snapshot, it was in "after" only and read as ~10 MB
// of native memory the load had left behind (bench/README.md, "The soak's native residue").
await sampleAfterFullGc(false);

// Then the baseline: 30 s idle, an ordinary sample (the RSS and the other figures before the
// load, nothing forced), then one after a full GC (the heap before the load).
await sleep(30_000);
await takeSample();
// jemalloc's own counts (gdb stops popwarden for a moment: the snapshot's window stalls anyway).
const jemallocBefore = jemallocStats(popwardenPid);
profileDump('baseline');
await sampleAfterFullGc();
await sleep(10_000);

// The load: WORKERS processes, the clients dealt out among them.
const plan = (w: number): ClientPlan => ({
  tlsPort,
  stlsPort,
  ca: ca.toString(),
  good: dealt(GOOD_CLIENTS, w),
  stale: dealt(STALE_CLIENTS, w),
  users: USERS,
  staleUsers: STALE_USERS,
  rampSeconds: Math.min(60, MINUTES * 15),
  thinkSeconds: [5, 40],
  pauseSeconds: [2, 10],
  stalePauseSeconds: [30, 90],
});
const loadMs = MINUTES * 60_000;
/** One load, its SIGHUP and Redis restart, the clients' stop and the settle after it. */
async function runLoad(last: boolean): Promise<void> {
  phase = 'load';
  mark('load start');
  const workers = startClients(plan);
  await sleep(loadMs * 0.4);
  if (values['no-sighup'] !== true) {
    mark('SIGHUP');
    process.kill(popwardenPid, 'SIGHUP');
  }
  await sleep(loadMs * 0.2);
  if (values['no-redis-restart'] !== true) {
    mark('Redis stopped');
    await redis.kill();
    await sleep(5_000);
    await redis.restart();
    mark('Redis started');
  } else {
    await sleep(5_000);
  }
  await sleep(loadMs * 0.4 - 5_000);
  mark('load stop');
  await stopClients(workers);
  // The summary reads the settle after the last load as "after"; earlier settles count as load.
  if (last) phase = 'after';
  await sleep(SETTLE_MINUTES * 60_000);
}
/** jemalloc's counts after each load's settle (with --loads N, one per load). */
const jemallocAfterEach: (JemallocStats | undefined)[] = [];
for (let n = 1; n <= LOADS; n++) {
  loadNumber = n;
  await runLoad(n === LOADS);
  if (n < LOADS) {
    jemallocAfterEach.push(jemallocStats(popwardenPid));
    say(`jemalloc allocated after load ${n}: ${((jemallocAfterEach.at(-1)?.allocated ?? 0) / 1e6).toFixed(1)} MB`);
    profileDump(`after load ${n}`);
    await sleep(10_000);
  }
}
clearInterval(sampler);
await takeSample();
const jemallocAfter = jemallocStats(popwardenPid);
jemallocAfterEach.push(jemallocAfter);
profileDump('after the load');
// What the allocator keeps is not a leak: glibc's malloc holds freed native memory (OpenSSL's
// per-connection buffers) for reuse. malloc_trim(0), called in popwarden through gdb, gives it back
// to the system, so the RSS after it says what is still in use. Skipped when gdb is missing.
try {
  execFileSync('gdb', ['-p', String(popwardenPid), '-batch', '-ex', 'call (int)malloc_trim(0)'], { stdio: 'ignore', timeout: 60_000 });
  mark('malloc_trim');
  await sleep(2_000);
  await takeSample();
} catch (error) {
  say(`no malloc_trim: ${String(error)}`);
}
await sampleAfterFullGc();
// After the full GC, the native memory that dead JavaScript objects held (Buffers' backing
// stores, which an idle process does not collect) is freed: what is left is what lives on.
const jemallocAfterGc = jemallocStats(popwardenPid);
profileDump('after the load and a full GC');
// The snapshot's own buffers and what the full GC freed: jemalloc hands them back over its
// dirty-page decay (10 s, but it purges only when the process allocates, so an idle popwarden
// takes seconds to minutes); a sample 30 s later shows how far it got.
await sleep(30_000);
await takeSample();

// Dovecot's log goes with its temp dir: kept beside popwarden's, so the summary can be made again.
const dovecotLog = readFileSync(backend.logFile, 'utf8');
writeFileSync(join(runDir, 'dovecot.log'), dovecotLog);
const run = {
  startedAt: new Date(started).toISOString(),
  setup: { minutes: MINUTES, loads: LOADS, primingSnapshot: true, goodClients: GOOD_CLIENTS, staleClients: STALE_CLIENTS, workers: WORKERS, users: USERS, nofile: POPWARDEN_NOFILE, env: POPWARDEN_ENV },
  events,
  samples,
  clients: totals(),
  jemalloc: { baseline: jemallocBefore, after: jemallocAfter, afterGc: jemallocAfterGc, afterEachLoad: jemallocAfterEach },
};
const summary = summarize({ ...run, popwardenLog: readFileSync(logFile, 'utf8'), dovecotLog });
writeFileSync(`${values.out}.json`, JSON.stringify(run, null, 1));
writeFileSync(`${values.out}.md`, summary);
writeFileSync(values.chart!, renderChart(samples, events));
process.stdout.write(summary);
await stopTree(popwardenPid, popwardenChild);
await redis.stop();
await backend.stop();
process.exit(0);
