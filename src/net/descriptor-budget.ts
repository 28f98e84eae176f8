/**
 * Whether the process may open enough file descriptors for limits.max_sessions. Past the limit,
 * accept() fails with EMFILE and libuv drops new clients without a word, and a backend connect
 * fails mid-login: the session bound must bite first. Node raises its soft RLIMIT_NOFILE to the
 * hard limit at start, so the soft limit read here is what popwarden really has.
 */
import { readFileSync } from 'node:fs';
import { DESCRIPTOR_RESERVE } from '../config/limits.js';
import type { Config } from '../config/types.js';

/** A proxied session holds the client socket and the backend socket. */
const DESCRIPTORS_PER_SESSION = 2;

/**
 * Descriptors limits.max_sessions needs, the reserve for everything else included, and with an
 * `exec:` backend one per program (`backendPrograms`, limits.max_backend_processes): its stderr
 * pipe, held while it runs and through its exit grace after its session has closed.
 */
export function descriptorsNeeded(maxSessions: number, backendPrograms = 0): number {
  return maxSessions * DESCRIPTORS_PER_SESSION + DESCRIPTOR_RESERVE + backendPrograms;
}

/** The soft "Max open files" of a /proc/PID/limits text; undefined if absent or "unlimited". */
export function openFilesLimit(procLimits: string): number | undefined {
  const match = /^Max open files\s+(\d+)\s/m.exec(procLimits);
  return match === null ? undefined : Number(match[1]);
}

/**
 * The warning to log when the descriptor limit is below what limits.max_sessions needs, naming
 * both fixes; undefined when it is enough, when there is no bound, or off Linux (no /proc).
 */
export function descriptorWarning(
  maxSessions: number,
  readLimits = () => readFileSync('/proc/self/limits', 'utf8'),
  backendPrograms = 0,
): string | undefined {
  if (maxSessions === 0) return undefined;
  let limit: number | undefined;
  try {
    limit = openFilesLimit(readLimits());
  } catch {
    return undefined;
  }
  const needed = descriptorsNeeded(maxSessions, backendPrograms);
  if (limit === undefined || limit >= needed) return undefined;
  const fits = Math.max(0, Math.floor((limit - DESCRIPTOR_RESERVE - backendPrograms) / DESCRIPTORS_PER_SESSION));
  const what = backendPrograms === 0 ? `limits.max_sessions ${maxSessions} needs` : `limits.max_sessions ${maxSessions} and limits.max_backend_processes ${backendPrograms} need`;
  return (
    `${what} ${needed} file descriptors but the limit is ${limit}: ` +
    `raise it (LimitNOFILE= in the unit, ulimit -n) or set limits.max_sessions to ${fits} or less`
  );
}

/** The warning for `config`: its max_sessions, and its max_backend_processes if any backend is a program. */
export function configDescriptorWarning(config: Pick<Config, 'limits' | 'backends'>): string | undefined {
  const programs = config.backends.some((backend) => backend.address.kind === 'exec') ? config.limits.maxBackendProcesses : 0;
  return descriptorWarning(config.limits.maxSessions, undefined, programs);
}
