/**
 * A recording tap for backends that are programs: popwarden's `exec:` backend, or the command a
 * socket-activated listener runs for each connection of a `unix:` backend. What startTap
 * (tap.ts) is for a TCP link: in place of the program runs a small script that puts socat, with
 * raw dumps of both directions (-r, -R), between its stdin/stdout and the real program, so each
 * session leaves its bytes in a pair of files.
 *
 * Each session runs in a session (setsid) of its own whose id the script writes into its file
 * names, so whenIdle() can tell when every process a session started (socat, the server, what the
 * server forked) has exited. popwarden's own `exec:` spawn already makes one (`ownSession: false`);
 * systemd-socket-activate does not (`ownSession: true` runs the script under `setsid -w`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { processTable } from './proc.js';

/** A program as popwarden's exec: backend and the socket activator take it. */
export interface Program {
  readonly command: string;
  readonly args: readonly string[];
}

export interface RecordedProgram extends Program {
  /** Every byte sent to the program, session after session in the order they started. */
  clientToServer(): Buffer;
  /** Every byte the program sent back, in the same order. */
  serverToClient(): Buffer;
  /** Sessions started so far. */
  sessions(): number;
  /** Resolves once no process of any session is left; rejects after `timeoutMs`. */
  whenIdle(timeoutMs?: number): Promise<void>;
  /** Removes the scripts and recordings. */
  stop(): void;
}

const quote = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`;

/** Wraps `program` in a recording script; run what it returns wherever `program` would run. */
export function recordProgram(program: Program, options: { ownSession: boolean }): RecordedProgram {
  if (!path.isAbsolute(program.command)) throw new Error(`the program must be an absolute path: ${program.command}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'popwarden-recorded-'));
  const launcher = path.join(dir, 'launch.sh');
  fs.writeFileSync(launcher, `#!/bin/sh\nexec ${[program.command, ...program.args].map(quote).join(' ')}\n`, { mode: 0o755 });
  const record = path.join(dir, 'record.sh');
  // $$ is the session id: this script is the session leader (popwarden's detached spawn, or setsid).
  // The nanosecond clock first, so the names sort in the order the sessions started.
  fs.writeFileSync(
    record,
    [
      '#!/bin/sh',
      `n=$(date +%s%N)-$$`,
      `exec /usr/bin/socat -r ${quote(dir)}/$n.c2s -R ${quote(dir)}/$n.s2c STDIO EXEC:${launcher}`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const recordings = (suffix: string): string[] =>
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(suffix))
      .sort();
  const concat = (suffix: string): Buffer => Buffer.concat(recordings(suffix).map((f) => fs.readFileSync(path.join(dir, f))));
  const sessionIds = (): Set<number> => new Set(recordings('.c2s').map((f) => Number(/-(\d+)\.c2s$/.exec(f)?.[1])));
  const alive = (): number[] => {
    const ids = sessionIds();
    if (ids.size === 0) return [];
    return processTable()
      .filter((p) => p.state !== 'Z' && ids.has(p.session))
      .map((p) => p.pid);
  };
  return {
    command: options.ownSession ? '/usr/bin/setsid' : record,
    args: options.ownSession ? ['-w', record] : [],
    clientToServer: () => concat('.c2s'),
    serverToClient: () => concat('.s2c'),
    sessions: () => recordings('.c2s').length,
    async whenIdle(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (alive().length > 0) {
        if (Date.now() > deadline) throw new Error(`recorded sessions still running after ${timeoutMs} ms: ${alive().join(' ')}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
