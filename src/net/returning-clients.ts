/**
 * The addresses a login succeeded from lately: the clients the process-wide bounds keep a share
 * for (RETURNING_CLIENTS_SHARE_DIVISOR), so that a flood from fresh addresses that fills a bound
 * faster than the eviction floor lets anything go does not lock the owner out. Read at TCP
 * accept, before TLS, with no Redis round trip: it is this process's own memory (the limiter's
 * `trusted_for` pairs in Redis name a user, which a connection has not given yet). A restart
 * forgets it; the first login afterwards is a stranger's until it succeeds. Each address keeps
 * the account that last logged in from it, so the kept share can be counted per account
 * (KeptShare): one password used from many addresses cannot fill it.
 */
import { MAX_RETURNING_CLIENT_ADDRESSES, RETURNING_ACCOUNT_SHARE_DIVISOR, RETURNING_CLIENTS_SHARE_DIVISOR } from '../config/limits.js';
import { ipKey } from './addresses.js';

export interface ReturningClientsOptions {
  /** How long a successful login makes its address a returning client (rate_limit.trusted_for). */
  readonly ttlMs: number;
  /** IPv6 addresses are remembered by this prefix (rate_limit.ipv6_prefix), as every bound counts them. */
  readonly ipv6PrefixLength: number;
  readonly maxAddresses?: number;
  /** For tests: the clock, in ms. */
  readonly now?: () => number;
}

interface Returning {
  /** When it stops counting. */
  readonly until: number;
  /** The account (canonical username) whose login made it returning. */
  readonly account: string;
}

export class ReturningClients {
  /** Address key → its last login; oldest login first (a Map keeps insertion order). */
  readonly #returning = new Map<string, Returning>();
  readonly #options: ReturningClientsOptions;
  readonly #now: () => number;

  constructor(options: ReturningClientsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** `account` logged in from `address`: the address moves to the young end, on that account. */
  remember(address: string, account: string): void {
    if (this.#options.ttlMs <= 0) return;
    const key = ipKey(address, this.#options.ipv6PrefixLength);
    this.#returning.delete(key);
    this.#returning.set(key, { until: this.#now() + this.#options.ttlMs, account });
    if (this.#returning.size > (this.#options.maxAddresses ?? MAX_RETURNING_CLIENT_ADDRESSES)) {
      const oldest = this.#returning.keys().next().value;
      if (oldest !== undefined) this.#returning.delete(oldest);
    }
  }

  /** The account whose login from `address` (or its IPv6 network) succeeded within the ttl; undefined for a stranger. */
  accountOf(address: string): string | undefined {
    const key = ipKey(address, this.#options.ipv6PrefixLength);
    const returning = this.#returning.get(key);
    if (returning === undefined) return undefined;
    if (returning.until > this.#now()) return returning.account;
    this.#returning.delete(key);
    return undefined;
  }
}

/** The release of a place not counted in the kept share. */
const NOT_KEPT = (): void => undefined;

/**
 * One process bound's places (limits.max_handshakes or limits.max_sessions) as a connection sees
 * them: anyone may take the first fifteen sixteenths; the last sixteenth only a returning client,
 * and only while the account that made its address returning holds less than its part
 * (RETURNING_ACCOUNT_SHARE_DIVISOR). A place is counted to the account when it is taken past the
 * strangers' share, and until it is given back. One Map entry per account holding kept places.
 */
export class KeptShare {
  readonly #max: number;
  readonly #strangers: number;
  readonly #perAccount: number;
  /** Account → kept places it holds. */
  readonly #held = new Map<string, number>();

  /** `max`: the bound; 0 = no bound. */
  constructor(max: number) {
    const kept = Math.floor(max / RETURNING_CLIENTS_SHARE_DIVISOR);
    this.#max = max;
    this.#strangers = max - kept;
    this.#perAccount = Math.max(1, Math.floor(kept / RETURNING_ACCOUNT_SHARE_DIVISOR));
  }

  /**
   * A place for a connection while `used` places are taken: its release (idempotent), or
   * undefined when the bound is full for this connection and `makeRoom` (evicting an older
   * connection) found no room either. `account`: the one a returning client's address is
   * counted to (ReturningClients.accountOf); undefined for a stranger.
   */
  take(used: number, account: string | undefined, makeRoom: () => boolean): (() => void) | undefined {
    if (this.#max === 0 || used < this.#strangers) return NOT_KEPT;
    const held = account === undefined ? 0 : (this.#held.get(account) ?? 0);
    // A place made by evicting another is that one's: not counted in the kept share.
    if (account === undefined || used >= this.#max || held >= this.#perAccount) return makeRoom() ? NOT_KEPT : undefined;
    this.#held.set(account, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#held.get(account) ?? 1) - 1;
      if (left <= 0) this.#held.delete(account);
      else this.#held.set(account, left);
    };
  }
}
