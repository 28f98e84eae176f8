/**
 * When a link to a backend on this host may carry a cleartext password (popa3d knows nothing but
 * USER/PASS). Nobody can sniff loopback, a UNIX socket or a child's socket without being root
 * already; the attack left is to stand in for the server: bind its port, or put a socket of one's
 * own at its path, while it is down. So a local link is trusted only where no other user can do
 * that: a privileged loopback port (mechanism.ts loopbackTrusted), a UNIX socket whose directories
 * only root or popwarden's user may change, or a program popwarden starts itself.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { BackendAddress, BackendConfig } from '../config/types.js';
import { isLoopbackAddress } from '../net/addresses.js';
import { loopbackTrusted } from './mechanism.js';

/** Write permission for group or others. */
const WRITABLE_BY_OTHERS = 0o022;
/** The sticky bit: in such a directory only an entry's owner may remove or rename it. */
const STICKY = 0o1000;

/** A backend on this host: a loopback address, a UNIX socket, or a program. */
export function isLocalBackend(address: BackendAddress): boolean {
  if (address.kind !== 'tcp') return true;
  return address.host === 'localhost' || isLoopbackAddress(address.host);
}

/** Whether the link may carry a cleartext password, and if not for a local link, why not. */
export type LocalTrust = { readonly trusted: true } | { readonly trusted: false; readonly why?: string };

/**
 * The trust rule for the link just made to `backend`. `remoteAddress` is the TCP peer; unused for
 * the other kinds. backend_trust_loopback false trusts nothing, true any local link.
 */
export async function localLinkTrust(backend: BackendConfig, remoteAddress: string | undefined): Promise<LocalTrust> {
  const { address, trustLoopback } = backend;
  switch (address.kind) {
    case 'tcp':
      return { trusted: loopbackTrusted(trustLoopback, remoteAddress ?? '', address.port) };
    case 'exec':
      // popwarden's own child, on a socket pair nobody else holds: as safe as a local link gets.
      return { trusted: trustLoopback !== false };
    case 'unix': {
      if (trustLoopback !== undefined) return { trusted: trustLoopback };
      const why = await replaceableBecause(address.path, 'socket');
      return why === undefined ? { trusted: true } : { trusted: false, why };
    }
  }
}

/**
 * Why another user could put something else at `path`, or undefined when only root and
 * popwarden's user can: every directory on the way (symbolic links followed, and the resolved
 * path checked as well) belongs to one of them and nobody else may write it. A sticky directory
 * (/tmp) protects the entries it holds from other users, so it is accepted above an existing
 * entry of ours; but not as the socket's own directory, since a socket vanishes when its server
 * stops and anyone may then take the free name. A program must also be ours and unwritable.
 */
export async function replaceableBecause(path: string, kind: 'socket' | 'program'): Promise<string | undefined> {
  const uid = process.getuid?.() ?? 0;
  const ownedByOthers = (owner: number): boolean => owner !== 0 && owner !== uid;
  const resolved = await realpath(path).catch(async () => join(await realpath(dirname(path)).catch(() => dirname(path)), basename(path)));
  for (const candidate of new Set([path, resolved])) {
    const directories = ancestors(candidate);
    for (const [index, directory] of directories.entries()) {
      const stats = await stat(directory).catch(() => undefined);
      if (stats === undefined) return `${directory} cannot be read`;
      if (ownedByOthers(stats.uid)) return `${directory} belongs to uid ${stats.uid}, who could replace ${path}`;
      const ownDirectory = index === directories.length - 1;
      const stickyEnough = (stats.mode & STICKY) !== 0 && !(ownDirectory && kind === 'socket');
      if ((stats.mode & WRITABLE_BY_OTHERS) !== 0 && !stickyEnough) {
        return `${directory} is writable by group or others (mode ${(stats.mode & 0o7777).toString(8)}), who could replace ${path}`;
      }
    }
    if (kind === 'program') {
      const stats = await stat(candidate).catch(() => undefined);
      if (stats === undefined) return `${candidate} cannot be read`;
      if (ownedByOthers(stats.uid)) return `${candidate} belongs to uid ${stats.uid}, who could change it`;
      if ((stats.mode & WRITABLE_BY_OTHERS) !== 0) return `${candidate} is writable by group or others`;
    }
  }
  return undefined;
}

/** "/", "/run", "/run/pop" for "/run/pop/pop.sock". */
function ancestors(path: string): string[] {
  const chain: string[] = [];
  for (let directory = dirname(path); ; directory = dirname(directory)) {
    chain.unshift(directory);
    if (directory === dirname(directory)) return chain;
  }
}
