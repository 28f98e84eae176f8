/**
 * The process table as /proc shows it, for tests that must prove a process leaves nothing behind:
 * no child still running after its session, and no zombie ever.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export interface ProcEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  /** R, S, D, Z (zombie), T, ... */
  readonly state: string;
  readonly comm: string;
}

/** Every process on the host (as far as this PID namespace sees), zombies included. */
export function processTable(): ProcEntry[] {
  const found: ProcEntry[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
    } catch {
      continue; // exited while we looked
    }
    // After the ")" that ends comm: state ppid pgrp session ...
    const close = stat.lastIndexOf(')');
    const [state = '?', ppid, pgrp, session] = stat.slice(close + 2).split(' ');
    found.push({ pid: Number(entry), ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session), state, comm: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return found;
}

/** Every process whose parent is `pid`, zombies included. */
export function childrenOf(pid: number): ProcEntry[] {
  return processTable().filter((p) => p.ppid === pid);
}

/** SIGTERM to a child still running, resolved once it has exited (a test's after() hook). */
export async function terminate(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
