import { CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS, MAX_REMEMBERED_APOP_USERS, REMEMBERED_APOP_USER_MS } from '../config/limits.js';
import type { UsernameCanonical } from '../config/types.js';
import { canonicalUser } from '../auth/rate-limit/keys.js';
import { ipKey } from '../net/addresses.js';

/** How a user last logged in to a backend that offers APOP. */
export type ApopUserKind =
  /** APOP worked: the user has an APOP secret, so a refused APOP is final (no cleartext retry). */
  | 'apop'
  /** APOP was refused and the cleartext retry worked: the user has no APOP secret there. */
  | 'cleartext'
  /**
   * Not known from a success, but APOP and the cleartext retry both refused a password from this
   * client address lately: tried in clear only from there for now, so each further wrong guess
   * from it costs the backend one failure.
   */
  | 'retry-refused';

/**
 * What popwarden learnt, per backend and user, from successful logins to a backend that always
 * offers APOP (solid-pop3d, qpopper, mailutils) although only some users have an APOP secret.
 * popwarden retries a refused APOP with the same password in a cleartext mechanism, on a fresh
 * connection, where the link may carry it (see loginToBackend). For a user who has both an APOP
 * secret and a different system password, that retry tests one guess against two secrets; once
 * the user is known to log in with APOP, a refused APOP is final, and once known to log in
 * in clear, APOP is not tried at all: one secret per guess either way.
 *
 * Only successful logins write these entries, so guessing cannot fill them; they are bounded anyway (the
 * oldest entry goes) and every entry expires a day after the success that wrote it, so a user
 * whose APOP secret was removed is locked out of APOP at most that long (a restart forgets all).
 * In memory only: a restart loses nothing but the first retry.
 *
 * Users are keyed by account, as the limits are (`rate_limit.username_canonical`): were "Alice"
 * or "alice@x" another entry than alice, a spelling would buy back the retry that alice's APOP
 * secret rules out.
 *
 * Failures write one thing, apart: 'retry-refused' (see ApopUserKind), for
 * CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS, in a map of its own with the same bound, so guesses at
 * many users can push out only each other, never what successful logins taught. It is kept per
 * client address (IPv6: per /64) as well as per user, as the limiter's hard blocks are:
 * for a user whose APOP secret differs from their system password, 'retry-refused' refuses their
 * own APOP secret, so a mark any address could set would let one wrong guess an hour lock them
 * out, and make their own attempts count as failures. It is written
 * only for a backend where a cleartext login has worked after a refused APOP (cleartextWorks):
 * where none ever has (every user has an APOP secret, or the backend refuses USER/PASS, as a
 * Dovecot with only APOP does), trying a user in clear only would refuse their right password.
 */
export class ApopUsers {
  readonly #entries = new ExpiringEntries<'apop' | 'cleartext'>();
  readonly #refusedRetries = new ExpiringEntries<'retry-refused'>();
  /** Backends (HOST:PORT) where a user logged in in clear after a refused APOP; configured backends only, so bounded. */
  readonly #cleartextWorks = new Set<string>();

  constructor(
    private readonly accounts: UsernameCanonical,
    private readonly maxEntries = MAX_REMEMBERED_APOP_USERS,
    private readonly ttlMs = REMEMBERED_APOP_USER_MS,
    private readonly refusedRetryMs = CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS,
  ) {}

  /**
   * How `user` last logged in to `backend`, or that a retry was refused lately for a login from
   * `from` (the client's address), if popwarden remembers it.
   */
  get(backend: string, user: string, from: string, now = Date.now()): ApopUserKind | undefined {
    const key = keyOf(backend, canonicalUser(user, this.accounts));
    return this.#entries.get(key, now) ?? this.#refusedRetries.get(refusedKeyOf(key, from), now);
  }

  /**
   * Records a successful login ('apop' or 'cleartext', which also ends the 'retry-refused' of
   * `from`), or a refused retry of a login from `from`; the entry moves to the young end of its
   * eviction order.
   */
  remember(backend: string, user: string, kind: ApopUserKind, from: string, now = Date.now()): void {
    const key = keyOf(backend, canonicalUser(user, this.accounts));
    if (kind === 'retry-refused') {
      this.#refusedRetries.set(refusedKeyOf(key, from), kind, now + this.refusedRetryMs, this.maxEntries);
      return;
    }
    this.#refusedRetries.delete(refusedKeyOf(key, from));
    this.#entries.set(key, kind, now + this.ttlMs, this.maxEntries);
    if (kind === 'cleartext') this.#cleartextWorks.add(backend);
  }

  /** Whether a user has logged in to `backend` in clear after a refused APOP, since this process started. */
  cleartextWorks(backend: string): boolean {
    return this.#cleartextWorks.has(backend);
  }

  /** Entries learnt from successful logins. */
  get size(): number {
    return this.#entries.size;
  }
}

/** Entries that expire, at most `maxEntries`: past it, the one written longest ago goes. */
class ExpiringEntries<K> {
  readonly #entries = new Map<string, { readonly kind: K; readonly until: number }>();

  get(key: string, now: number): K | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.until <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.kind;
  }

  set(key: string, kind: K, until: number, maxEntries: number): void {
    this.#entries.delete(key);
    this.#entries.set(key, { kind, until });
    if (this.#entries.size > maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}

// HOST:PORT holds no NUL, so the first NUL ends it whatever the username holds.
const keyOf = (backend: string, user: string): string => `${backend}\0${user}`;

/**
 * A refused retry's key: the user's and the client's address, an IPv6 one by its /64 (the
 * limiter's default prefix: a mark only spares the backend a second failure per guess, so a
 * coarser or finer network changes only how many guesses still cost it two).
 */
export const REFUSED_RETRY_IPV6_PREFIX = 64;
const refusedKeyOf = (userKey: string, from: string): string => `${userKey}\0${ipKey(from, REFUSED_RETRY_IPV6_PREFIX)}`;
