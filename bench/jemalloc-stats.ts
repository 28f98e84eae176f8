/**
 * jemalloc's own counts in a live process, read through gdb with mallctl (the soak reads them
 * before and after the load): what the program has allocated, the pages that hold it, the
 * allocator's metadata, what is resident, and what the threads' caches hold (an idle thread does
 * not flush its cache). undefined when gdb is missing, the process does not run on jemalloc, or a
 * read fails. gdb stops the process for about a second: call it where a stall does not count.
 */
import { execFileSync } from 'node:child_process';

export interface JemallocStats {
  readonly allocated: number;
  readonly active: number;
  readonly metadata: number;
  readonly resident: number;
  readonly mapped: number;
  readonly retained: number;
  /** Bytes in the threads' caches, all arenas (MALLCTL_ARENAS_ALL is 4096). */
  readonly tcacheBytes: number;
}

const KEYS: Record<keyof JemallocStats, string> = {
  allocated: 'stats.allocated',
  active: 'stats.active',
  metadata: 'stats.metadata',
  resident: 'stats.resident',
  mapped: 'stats.mapped',
  retained: 'stats.retained',
  tcacheBytes: 'stats.arenas.4096.tcache_bytes',
};

export function jemallocStats(pid: number): JemallocStats | undefined {
  // mallctl(name, oldp, oldlenp, newp, newlen); writing "epoch" refreshes the statistics first.
  const args = ['-p', String(pid), '-batch',
    '-ex', 'set $m=(int(*)(const char*,void*,unsigned long*,void*,unsigned long))mallctl',
    '-ex', 'set $buf=(unsigned long*)malloc(8)', '-ex', 'set $len=(unsigned long*)malloc(8)',
    '-ex', 'set $buf[0]=1', '-ex', 'call (int)$m("epoch",0,0,$buf,8)'];
  for (const [field, key] of Object.entries(KEYS)) {
    args.push('-ex', 'set *$len=8', '-ex', `set $rc=(int)$m("${key}",$buf,$len,0,0)`, '-ex', `printf "jemalloc ${field} %d %lu\\n", $rc, $buf[0]`);
  }
  args.push('-ex', 'call (void)free($buf)', '-ex', 'call (void)free($len)');
  try {
    const out = execFileSync('gdb', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 });
    const stats: Partial<Record<keyof JemallocStats, number>> = {};
    for (const [, field, rc, value] of out.matchAll(/^jemalloc (\w+) (-?\d+) (\d+)$/gm)) {
      if (rc !== '0') return undefined;
      stats[field as keyof JemallocStats] = Number(value);
    }
    return Object.keys(KEYS).every((k) => k in stats) ? (stats as JemallocStats) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Asks jemalloc for a heap profile dump (mallctl "prof.dump"), written as PREFIX.PID.N.mM.heap
 * where PREFIX is the process's MALLOC_CONF prof_prefix. Only a process started with
 * MALLOC_CONF=prof:true can dump (Debian's libjemalloc2 is built with profiling); `jeprof
 * --base=A B` (package libjemalloc-dev) then gives the allocation stacks of what B holds beyond A.
 * False when gdb is missing or the dump fails.
 */
export function jemallocProfileDump(pid: number): boolean {
  const args = ['-p', String(pid), '-batch',
    '-ex', 'printf "jemalloc prof.dump %d\\n", (int)((int(*)(const char*,void*,unsigned long*,void*,unsigned long))mallctl)("prof.dump",0,0,0,0)'];
  try {
    return /^jemalloc prof\.dump 0$/m.test(execFileSync('gdb', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 }));
  } catch {
    return false;
  }
}

if (process.argv[1]?.endsWith('jemalloc-stats.ts')) process.stdout.write(`${JSON.stringify(jemallocStats(Number(process.argv[2])))}\n`);
