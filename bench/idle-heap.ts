/**
 * What one idle authenticated TLS session holds in popwarden's JavaScript heap, by constructor:
 * the deterministic half of workload (d). A fresh popwarden (the bench's flags, Dovecot and Redis)
 * gets one warm-up login, then a heap snapshot; then N idle sessions (bench/idle-sessions.py) and
 * a second snapshot. A snapshot is taken after a full GC, so the difference holds only what the
 * sessions keep alive: no garbage, no heap growth steps, no load dependence. Prints the bytes and
 * objects per session of each constructor that grew. (No RSS: the first snapshot's own
 * allocations would be in it; workload (d) of bench/run.ts reads RSS.)
 *
 *   node --import tsx bench/idle-heap.ts [--sessions 1000] [--top 40] [--cli dist/cli.js] [--bare] [--keep]
 *
 * `--bare` measures bench/bare-tls-server.mjs instead (Node's own TLS, the floor); `--keep` leaves
 * the snapshots in bench/results/profiles/. Needs `npm run build`.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedis } from '../test/harness/redis.js';
import { freePort, waitForPort } from '../test/harness/ports.js';
import { ACCOUNTS, passwordOf, startBenchBackend } from './backend.js';
import { PopClient } from './pop-client.js';
import { heapSnapshot, killOnExit, spawnWrapped, stopTree } from './proc.js';
import { benchEnvironment, shebangNodeOptions, startPopwarden, type Target } from './targets.js';
import { idleGenerator } from './workloads.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1000' },
    top: { type: 'string', default: '40' },
    cli: { type: 'string', default: 'dist/cli.js' },
    bare: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
  },
});
const sessions = Number(values.sessions);
const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
const profileDir = join(root, 'bench', 'results', 'profiles');
mkdirSync(profileDir, { recursive: true });
const env = benchEnvironment(values['no-pin'] !== true);
const nodeOptions = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profileDir}`];

/** Self size and count per "type name" (V8's node type and constructor or function name). */
type Census = Map<string, { bytes: number; count: number }>;

/** Reads a .heapsnapshot and sums the self sizes of its nodes by type and name. */
function census(file: string): { byName: Census; total: number } {
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((field) => fields.indexOf(field));
  const byName: Census = new Map();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const type = types[snapshot.nodes[i + typeAt!]!]!;
    // Strings and numbers are named by their value: one line per type is enough for them.
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'number' ? '' : snapshot.strings[snapshot.nodes[i + nameAt!]!]!;
    const key = `${type} ${name.length > 60 ? `${name.slice(0, 57)}...` : name}`;
    const size = snapshot.nodes[i + sizeAt!]!;
    const entry = byName.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += size;
    entry.count += 1;
    byName.set(key, entry);
    total += size;
  }
  return { byName, total };
}

async function startBare(): Promise<Target> {
  const port = await freePort();
  const server = fileURLToPath(new URL('./bare-tls-server.mjs', import.meta.url));
  const child = spawnWrapped(env.frontWrap, [process.execPath, ...shebangNodeOptions('dist/cli.js'), ...nodeOptions, server, String(port), env.certFile, env.keyFile], 'inherit');
  await waitForPort('127.0.0.1', port);
  return { name: 'popwarden', port, tls: true, pid: child.pid!, helperPid: undefined, stop: () => stopTree(child.pid!, child) };
}

const backend = await startBenchBackend(env.restWrap);
const redis = await startRedis();
killOnExit(redis.pid);
const target = values.bare === true ? await startBare() : await startPopwarden(env, backend.port, redis.url, nodeOptions, values.cli);
const generator = idleGenerator(env, target.port);
const snapshots: string[] = [];
try {
  const warm = await PopClient.login({ port: target.port, tls: true, ca: env.ca }, ACCOUNTS.small, passwordOf(ACCOUNTS.small));
  await warm.quit().catch(() => undefined);
  snapshots.push(await heapSnapshot(target.pid!, profileDir));
  const held = await generator.hold(sessions);
  snapshots.push(await heapSnapshot(target.pid!, profileDir));
  const before = census(snapshots[0]!);
  const after = census(snapshots[1]!);
  const rows = [...after.byName].map(([key, { bytes, count }]) => {
    const was = before.byName.get(key) ?? { bytes: 0, count: 0 };
    return { key, bytes: (bytes - was.bytes) / held.held, count: (count - was.count) / held.held };
  });
  rows.sort((a, b) => b.bytes - a.bytes);
  const top = Number(values.top);
  console.log(`${values.bare === true ? 'bare node:tls server' : values.cli}: ${held.held} idle sessions (failed ${held.failed}), ${process.version}`);
  console.log(`JS heap (snapshot self sizes): ${((after.total - before.total) / held.held).toFixed(0)} bytes per session`);
  console.log('');
  console.log('| bytes/session | objects/session | type and constructor |');
  console.log('|--:|--:|---|');
  for (const row of rows.slice(0, top)) {
    if (Math.abs(row.bytes) < 1) break;
    console.log(`| ${row.bytes.toFixed(0)} | ${row.count.toFixed(2)} | ${row.key} |`);
  }
} finally {
  await generator.stop();
  await target.stop();
  await redis.stop();
  await backend.stop();
  if (values.keep !== true) for (const file of snapshots) rmSync(file, { force: true });
}
process.exit(0);
