/**
 * What a process tree costs, read from /proc: CPU time (user + system, children included) and
 * resident memory. A target is a tree (nginx's master and worker, Dovecot's many processes), so
 * every reading sums the tree under the root PID; and stopping a target stops that tree, by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The fields of /proc/PID/stat after the command name, or undefined if the process is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name may hold spaces and parentheses; everything after its last ')' is fixed.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** `root` and every live descendant of it (zombies left out: they hold nothing any more). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields === undefined || fields[0] === 'Z') continue;
    const parent = Number(fields[1]);
    const list = children.get(parent) ?? [];
    list.push(Number(entry));
    children.set(parent, list);
  }
  const tree = statFields(root) === undefined ? [] : [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/**
 * CPU seconds the tree has used: utime + stime of each live process (all its threads) plus
 * cutime + cstime, what its reaped children used. A child reaped between two readings moves
 * from the first sum to the second, so it is counted once.
 */
export function cpuSeconds(root: number): number {
  const { user, system } = cpuSecondsSplit(root);
  return user + system;
}

/** cpuSeconds, as the time spent in the process itself (user) and in the kernel for it (system). */
export function cpuSecondsSplit(root: number): { user: number; system: number } {
  let user = 0;
  let system = 0;
  for (const pid of processTree(root)) {
    const f = statFields(pid);
    // Fields 14-17 of stat, counted from the pid: utime stime cutime cstime.
    if (f === undefined) continue;
    user += Number(f[11]) + Number(f[13]);
    system += Number(f[12]) + Number(f[14]);
  }
  return { user: user / TICKS_PER_SECOND, system: system / TICKS_PER_SECOND };
}

/** Resident memory of the whole tree, in KiB. */
export function rssKiB(root: number): number {
  let kib = 0;
  for (const pid of processTree(root)) {
    try {
      kib += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0);
    } catch {
      // exited while we looked
    }
  }
  return kib;
}

/**
 * One process's resident memory split in two (/proc/PID/smaps_rollup): anonymous pages (the
 * heaps, the allocator's arenas, stacks) and the rest, mostly file-backed pages (the code and
 * data of node and its libraries, read from disk on first use and kept while memory is plenty).
 * undefined if the process is gone or the kernel has no smaps_rollup.
 */
export function residentSplit(pid: number): { anonBytes: number; fileBytes: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
    const [rss, anon] = [kib('Rss'), kib('Anonymous')];
    if (Number.isNaN(rss) || Number.isNaN(anon)) return undefined;
    return { anonBytes: anon * 1024, fileBytes: (rss - anon) * 1024 };
  } catch {
    return undefined;
  }
}

/** CPU time used by several trees together, as one reading. */
export const cpuOf = (roots: readonly number[]): number => roots.reduce((sum, pid) => sum + cpuSeconds(pid), 0);

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** TERM to the tree (children first), KILL after 3 s, then waits for `child` to be reaped. */
export async function stopTree(root: number, child: ChildProcess): Promise<void> {
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalAll(processTree(root).reverse(), 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 3_000)))]);
  clearTimeout(timer);
  signalAll(processTree(root), 'SIGKILL');
  await exited;
}

const started: number[] = [];
let hooked = false;

/**
 * Kills the tree of `pid` when this process exits, however it exits short of SIGKILL: the last
 * resort for whatever a failed run did not stop itself.
 */
export function killOnExit(pid: number | undefined): void {
  if (pid === undefined) return;
  started.push(pid);
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const root of started) signalAll(processTree(root), 'SIGKILL');
  });
  // Ctrl-C and kill: exit through the hook above instead of leaving the servers running.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => process.exit(130));
}

/** Spawns `argv` under `wrap` (a command prefix: taskset, ulimit), killed when this process exits; `env` is added to this process's. */
export function spawnWrapped(wrap: readonly string[], argv: readonly string[], stderr: 'ignore' | 'inherit' = 'ignore', env: Readonly<Record<string, string>> = {}): ChildProcess {
  const child = spawn(wrap[0]!, [...wrap.slice(1), ...argv], { stdio: ['ignore', 'ignore', stderr], env: { ...process.env, ...env } });
  killOnExit(child.pid);
  return child;
}

/**
 * Asks a node process started with --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR for a heap
 * snapshot and resolves with its path once the file stops growing (at most 3 minutes).
 */
export async function heapSnapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  let size = -1;
  for (const deadline = Date.now() + 180_000; Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const file = readdirSync(dir).find((name) => name.endsWith('.heapsnapshot') && !before.has(name));
    if (file === undefined) continue;
    const now = statSync(join(dir, file)).size;
    if (now > 0 && now === size) return join(dir, file);
    size = now;
  }
  throw new Error('no heap snapshot within 3 minutes');
}
