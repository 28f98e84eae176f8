import { MAX_REMEMBERED_APOP_USERS, REMEMBERED_APOP_USER_MS } from '../config/limits.js';
import type { UsernameCanonical } from '../config/types.js';
import { canonicalUser } from '../auth/rate-limit/keys.js';

/** How a user last logged in to a backend that offers APOP. */
export type ApopUserKind =
  /** APOP worked: the user has an APOP secret, so a refused APOP is final (no cleartext retry). */
  | 'apop'
  /** APOP was refused and the cleartext retry worked: the user has no APOP secret there. */
  | 'cleartext';

/**
 * What popwarden learnt, per backend and user, from successful logins to a backend that always
 * offers APOP (solid-pop3d, qpopper, mailutils) although only some users have an APOP secret.
 * popwarden retries a refused APOP with the same password in a cleartext mechanism, on a fresh
 * connection, where the link may carry it (see loginToBackend). For a user who has both an APOP
 * secret and a different system password, that retry tests one guess against two secrets; once
 * the user is known to log in with APOP, a refused APOP is final, and once known to log in
 * in clear, APOP is not tried at all: one secret per guess either way.
 *
 * Only successful logins write here, so guessing cannot fill it; it is bounded anyway (the
 * oldest entry goes) and every entry expires a day after the success that wrote it, so a user
 * whose APOP secret was removed is locked out of APOP at most that long (a restart forgets all).
 * In memory only: a restart loses nothing but the first retry.
 *
 * Users are keyed by account, as the limits are (`rate_limit.username_canonical`): were "Alice"
 * or "alice@x" another entry than alice, a spelling would buy back the retry that alice's APOP
 * secret rules out.
 */
export class ApopUsers {
  readonly #entries = new Map<string, { readonly kind: ApopUserKind; readonly until: number }>();

  constructor(
    private readonly accounts: UsernameCanonical,
    private readonly maxEntries = MAX_REMEMBERED_APOP_USERS,
    private readonly ttlMs = REMEMBERED_APOP_USER_MS,
  ) {}

  /** How `user` last logged in to `backend`, if popwarden remembers it. */
  get(backend: string, user: string, now = Date.now()): ApopUserKind | undefined {
    const key = keyOf(backend, canonicalUser(user, this.accounts));
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.until <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.kind;
  }

  /** Records a successful login; the entry moves to the young end of the eviction order. */
  remember(backend: string, user: string, kind: ApopUserKind, now = Date.now()): void {
    const key = keyOf(backend, canonicalUser(user, this.accounts));
    this.#entries.delete(key);
    this.#entries.set(key, { kind, until: now + this.ttlMs });
    if (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}

// HOST:PORT holds no NUL, so the first NUL ends it whatever the username holds.
const keyOf = (backend: string, user: string): string => `${backend}\0${user}`;
