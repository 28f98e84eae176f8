/**
 * What each backend has offered before, so that a backend that suddenly offers less is refused
 * instead of trusted (issue 9.7). An impostor bound to the backend's port while the real server
 * is down, or a man in the middle on a remote link, can leave CRAM-MD5 out of CAPA or strip STLS
 * to get a cleartext password or a crackable APOP digest; the real server never did. The memory
 * only ever goes up: a stronger offer is remembered, a weaker one refused until an operator says
 * the change is real (`popwarden backend forget ADDRESS`, or deleting the file).
 *
 * One small JSON file in state_dir, mode 0600, replaced atomically (write, then rename). Every
 * login looks at it, so `backend forget` applies to a running popwarden; it is parsed again only
 * when a stat says it is another file than the one parsed last (every write renames a new file
 * in, so its inode changes). A memory that cannot be read or written refuses the login: it fails
 * closed.
 */
import { chmodSync, readFileSync, renameSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { BackendConfig } from '../config/types.js';
import { formatBackendAddress } from '../config/values.js';
import { backendKey } from '../config/backend-keys.js';
import { checkStateFile, ensureStateDir } from '../config/state-dir.js';
import { isLocalBackend } from './local-link.js';
import { MAX_REMEMBERED_BACKEND_ADDRESSES } from '../config/limits.js';

/** Name of the memory file inside state_dir. */
export const BACKEND_MEMORY_FILE = 'backends.json';

/** The strongest login a backend offered, weakest first. */
export const STRENGTHS = ['cleartext', 'apop', 'cram-md5'] as const;
export type BackendStrength = (typeof STRENGTHS)[number];

/** What one login saw the backend offer. `stls` undefined: not looked at (backend_tls off or implicit). */
export interface BackendOffer {
  readonly strongest: BackendStrength;
  readonly stls: boolean | undefined;
}

/** What is remembered of one backend. */
export interface RememberedBackend {
  readonly strongest: BackendStrength;
  readonly stls: boolean;
  /** ISO time of the first login that saw this backend. */
  readonly firstSeen: string;
  /** ISO time the remembered offer last went up. */
  readonly changed: string;
}

export type OfferVerdict =
  | { readonly kind: 'ok' }
  | { readonly kind: 'refuse'; readonly reason: string; readonly hint: string };

interface MemoryFile {
  version: 1;
  backends: Record<string, RememberedBackend>;
}

const rank = (strength: BackendStrength): number => STRENGTHS.indexOf(strength);

/** How an offer reads in a log line: "CRAM-MD5 with STLS". */
function describe(offer: { strongest: BackendStrength; stls: boolean | undefined }): string {
  const mechanism = { cleartext: 'only cleartext logins', apop: 'APOP', 'cram-md5': 'CRAM-MD5' }[offer.strongest];
  return offer.stls === undefined ? mechanism : `${mechanism} ${offer.stls ? 'with' : 'without'} STLS`;
}

/**
 * Which version of the file a parse came from. A rename in gives a new inode; the rest catches
 * an editor that rewrites the file in place.
 */
const versionOf = (stats: Stats): string => `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;

/** An address as one shell argument: an exec: backend's address has spaces, so it is quoted. */
export const shellWord = (address: string): string => (/\s/.test(address) ? `'${address}'` : address);

/** What one login's offer means against what was remembered: the verdict, and what to remember now. */
export interface Judgement {
  readonly verdict: OfferVerdict;
  /** Undefined: nothing to write (the offer is no stronger, or it was refused). */
  readonly remember: RememberedBackend | undefined;
}

/**
 * The one rule, for the file and for Redis alike: an offer weaker than the remembered one, or
 * without the STLS once seen, is refused; a stronger one is remembered. `forgetHint` says how
 * the operator accepts a backend changed on purpose, wherever the memory lives.
 */
export function judgeOffer(
  address: string,
  remembered: RememberedBackend | undefined,
  offer: BackendOffer,
  now: Date,
  forgetHint: string,
): Judgement {
  if (remembered !== undefined) {
    const weakerMechanism = rank(offer.strongest) < rank(remembered.strongest);
    const strippedStls = remembered.stls && offer.stls === false;
    if (weakerMechanism || strippedStls) {
      return {
        verdict: {
          kind: 'refuse',
          reason:
            `the backend ${address} offered ${describe(remembered)} before (remembered since ${remembered.changed}) ` +
            `and now offers ${describe(offer)}: refusing the downgrade, which is what an impostor on the port or ` +
            'a man in the middle would offer',
          hint: `if the backend was changed on purpose, ${forgetHint}; the next login remembers what it offers then`,
        },
        remember: undefined,
      };
    }
    const stronger = rank(offer.strongest) > rank(remembered.strongest) || (offer.stls === true && !remembered.stls);
    if (!stronger) return { verdict: { kind: 'ok' }, remember: undefined };
  }
  return {
    verdict: { kind: 'ok' },
    remember: {
      strongest: remembered === undefined || rank(offer.strongest) > rank(remembered.strongest) ? offer.strongest : remembered.strongest,
      stls: offer.stls === true || (remembered?.stls ?? false),
      firstSeen: remembered?.firstSeen ?? now.toISOString(),
      changed: now.toISOString(),
    },
  };
}

const sameEntry = (a: RememberedBackend, b: RememberedBackend): boolean =>
  a.strongest === b.strongest && a.stls === b.stls && a.firstSeen === b.firstSeen && a.changed === b.changed;

/** Whether `entry` is a remembered offer as the file and Redis hold them. */
export const isRememberedBackend = (entry: Partial<RememberedBackend> | null | undefined): entry is RememberedBackend =>
  entry !== null && entry !== undefined && STRENGTHS.includes(entry.strongest as BackendStrength) && typeof entry.stls === 'boolean';

const NOTHING_REMEMBERED: Readonly<Record<string, RememberedBackend>> = Object.freeze({});

/** The remembered offers of every backend popwarden has logged in to, in `stateDir`. */
export class BackendMemory {
  readonly file: string;
  /** The last parse and the file version it came from: a login costs a stat, not a read and a parse. */
  #cached: { readonly version: string; readonly backends: Readonly<Record<string, RememberedBackend>> } | undefined;

  constructor(
    readonly stateDir: string,
    /**
     * The most addresses the file holds. A route to an unlisted address may name any, and the file
     * is rewritten whole on every change; past the bound a new address is refused, not trusted
     * afresh on every login (which is what forgetting it would mean).
     */
    private readonly maxAddresses = MAX_REMEMBERED_BACKEND_ADDRESSES,
  ) {
    this.file = join(stateDir, BACKEND_MEMORY_FILE);
  }

  /** Every remembered backend by address (HOST:PORT). Throws if the file is unreadable or not ours. */
  entries(): Readonly<Record<string, RememberedBackend>> {
    return this.#current();
  }

  /**
   * Checks what a login sees `address` offer against what it offered before: a weaker offer is
   * refused (and nothing is written), anything else is remembered if it is stronger.
   */
  observe(address: string, offer: BackendOffer, now = new Date()): OfferVerdict {
    try {
      return this.#observe(address, offer, now);
    } catch (error) {
      return {
        kind: 'refuse',
        reason: `cannot check what the backend ${address} offered before: ${(error as Error).message}`,
        hint: `make ${this.stateDir} writable by popwarden, or move ${this.file} away to start afresh`,
      };
    }
  }

  #observe(address: string, offer: BackendOffer, now: Date): OfferVerdict {
    const remembered = this.#current()[address];
    if (remembered === undefined && this.#isFull()) {
      return {
        kind: 'refuse',
        reason:
          `${this.file} already remembers what ${this.maxAddresses} backends offered, the most it keeps, and ${address} ` +
          'is not one of them: refusing the login rather than trusting the backend afresh each time',
        hint:
          `list them with "popwarden backend show --state-dir ${this.stateDir}" and forget those no longer in use ` +
          `with "popwarden backend forget ADDRESS --state-dir ${this.stateDir}"`,
      };
    }
    const judged = judgeOffer(address, remembered, offer, now, this.#forgetHint(address));
    if (judged.remember !== undefined) {
      const memory = this.#read();
      memory.backends[address] = judged.remember;
      this.#write(memory);
    }
    return judged.verdict;
  }

  #isFull(): boolean {
    return Object.keys(this.#current()).length >= this.maxAddresses;
  }

  /** How an operator accepts a changed backend remembered here. */
  #forgetHint(address: string): string {
    return `run "popwarden backend forget ${shellWord(address)} --state-dir ${this.stateDir}" (or delete ${this.file})`;
  }

  /**
   * Makes the entry for `address` what `entry` says (undefined: forgets it): the copy of the
   * shared memory in Redis, kept for when Redis is down. Written only when it differs.
   */
  mirror(address: string, entry: RememberedBackend | undefined): void {
    const memory = this.#read();
    const held = memory.backends[address];
    if (entry === undefined ? held === undefined : held !== undefined && sameEntry(held, entry)) return;
    // A copy past the bound is left to Redis: the login was judged there, and the file's own
    // judgement refuses an address it has no room for.
    if (held === undefined && this.#isFull()) return;
    if (entry === undefined) delete memory.backends[address];
    else memory.backends[address] = entry;
    this.#write(memory);
  }

  /** Forgets one backend; false if it was not remembered. */
  forget(address: string): boolean {
    const memory = this.#read();
    if (memory.backends[address] === undefined) return false;
    delete memory.backends[address];
    this.#write(memory);
    return true;
  }

  /** The memory as the file holds it now; a copy the caller may change. */
  #read(): MemoryFile {
    return { version: 1, backends: { ...this.#current() } };
  }

  /** The memory as the file holds it now, not to be changed: a login costs a stat, not a copy. */
  #current(): Readonly<Record<string, RememberedBackend>> {
    const stats = statSync(this.file, { throwIfNoEntry: false });
    if (stats === undefined) {
      this.#cached = undefined;
      return NOTHING_REMEMBERED;
    }
    const version = versionOf(stats);
    if (this.#cached?.version !== version) {
      // Whoever may write the file or its directory could rewrite what is remembered and
      // re-open a downgrade: the same ownership and mode rules as every state file.
      ensureStateDir(this.stateDir);
      checkStateFile(this.file);
      this.#cached = { version, backends: Object.freeze(this.#parse()) };
    }
    return this.#cached.backends;
  }

  #parse(): Record<string, RememberedBackend> {
    const text = readFileSync(this.file, 'utf8');
    const parsed = JSON.parse(text) as Partial<MemoryFile> | null;
    if (parsed?.version !== 1 || typeof parsed.backends !== 'object' || parsed.backends === null) {
      throw new Error(`${this.file} is not a popwarden backend memory (version 1); move it away to start afresh`);
    }
    const backends: Record<string, RememberedBackend> = {};
    for (const [address, entry] of Object.entries(parsed.backends)) {
      if (!isRememberedBackend(entry)) {
        throw new Error(`${this.file}: the entry for ${address} is malformed; forget it or delete the file`);
      }
      backends[address] = entry;
    }
    return backends;
  }

  #write(memory: MemoryFile): void {
    ensureStateDir(this.stateDir);
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(memory, null, 2)}\n`, { mode: 0o600 });
    chmodSync(temporary, 0o600);
    renameSync(temporary, this.file);
  }
}

/**
 * The startup warning for a remote backend with `backend_tls: auto` that has never been seen to
 * offer STLS: until it has, a man in the middle can strip STLS and popwarden would not know.
 * Undefined when there is nothing to warn about.
 */
export function unseenStlsWarning(backend: BackendConfig, memory: BackendMemory): string | undefined {
  if (backend.tls !== 'auto' || isLocalBackend(backend.address)) return undefined;
  const address = formatBackendAddress(backend.address);
  let remembered: RememberedBackend | undefined;
  try {
    remembered = memory.entries()[address];
  } catch {
    remembered = undefined; // the first login says what is wrong with the file
  }
  if (remembered?.stls === true) return undefined;
  const tls = backendKey(backend, 'tls');
  return (
    `the backend ${address} is remote and runs with ${tls}: auto, and popwarden has never seen it offer STLS: ` +
    `a man in the middle could strip STLS and get a cleartext password or an APOP digest. Set ${tls}: starttls ` +
    '(or implicit) if the backend supports TLS; once a login has seen STLS offered, a backend without it is refused'
  );
}
