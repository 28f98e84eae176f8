/**
 * The state directory holds secrets popwarden generates and then trusts: the self-signed key, the
 * rate-limit HMAC key, and what other modules remember between starts. Whoever can write there
 * can plant a certificate and key that popwarden serves, or a key it hashes passwords with. So
 * the directory and each file read from it must belong to popwarden's user (or root) and be
 * writable by nobody else; anything looser is refused with the command that fixes it.
 */
import { chmodSync, mkdirSync, statSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { ConfigError } from './config-error.js';

/**
 * Whose the state directory must be: this process's user (or root), or, for --check-config,
 * which may run as root or an administrator rather than as the service's user, anyone's.
 */
type Owner = 'this process' | 'any user';

/** Write permission for group or others. */
const WRITABLE_BY_OTHERS = 0o022;

function currentUser(): { readonly uid: number; readonly name: string } {
  const uid = process.getuid?.() ?? 0;
  let name = String(uid);
  try {
    name = userInfo().username;
  } catch {
    // No passwd entry (a container's random uid): the number does for chown.
  }
  return { uid, name };
}

/** Why `stats` may not be trusted, as one line with the fix; undefined when it may. */
function problemWith(what: string, path: string, stats: Stats, chmodTo: string, owner: Owner = 'this process'): string | undefined {
  const user = currentUser();
  if (owner === 'this process' && stats.uid !== user.uid && stats.uid !== 0) {
    return `${what} ${path} is owned by uid ${stats.uid}, not by popwarden's user (${user.name}, uid ${user.uid}) or root; check what put it there, then chown ${user.name} ${path}`;
  }
  if ((stats.mode & WRITABLE_BY_OTHERS) !== 0) {
    const mode = (stats.mode & 0o7777).toString(8).padStart(4, '0');
    return `${what} ${path} is writable by group or others (mode ${mode}); check what is in it, then chmod ${chmodTo} ${path}`;
  }
  return undefined;
}

/**
 * Refuses a state directory that is not a directory, is owned by another user than popwarden's
 * (root may own it too; not checked for `owner: 'any user'`), or is writable by group or others,
 * with a ConfigError whose message names the path and the fix. An absent one is fine: popwarden
 * creates it at start. --check-config runs it too, so that the check fails where the start would.
 */
export function checkStateDir(dir: string, owner: Owner = 'this process'): 'present' | 'absent' {
  let stats: Stats;
  try {
    stats = statSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return 'absent';
  }
  if (!stats.isDirectory()) throw new ConfigError(`state_dir ${dir} is not a directory; remove it or set state_dir to a directory`);
  const problem = problemWith('state_dir', dir, stats, '700', owner);
  if (problem !== undefined) throw new ConfigError(problem);
  return 'present';
}

/** Creates the state directory (mode 0700) when it is absent, after checkStateDir. */
export function ensureStateDir(dir: string): void {
  if (checkStateDir(dir) === 'present') return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode passes through the umask; say what we mean.
  chmodSync(dir, 0o700);
}

/**
 * Refuses a file in the state directory that another user owns or that group or others may write,
 * before popwarden reads it. An absent file is fine (the caller creates it).
 */
export function checkStateFile(path: string): void {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const problem = problemWith('state file', path, stats, 'go-w');
  if (problem !== undefined) throw new ConfigError(problem);
}
