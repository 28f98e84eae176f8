/**
 * The addresses a login succeeded from lately: the clients the process-wide bounds keep a share
 * for (RETURNING_CLIENTS_SHARE_DIVISOR), so that a flood from fresh addresses that fills a bound
 * faster than the eviction floor lets anything go does not lock the owner out. Read at TCP
 * accept, before TLS, with no Redis round trip: it is this process's own memory (the limiter's
 * `trusted_for` pairs in Redis name a user, which a connection has not given yet). A restart
 * forgets it; the first login afterwards is a stranger's until it succeeds.
 */
import { MAX_RETURNING_CLIENT_ADDRESSES, RETURNING_CLIENTS_SHARE_DIVISOR } from '../config/limits.js';
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

export class ReturningClients {
  /** Address key → when it stops counting; oldest login first (a Map keeps insertion order). */
  readonly #until = new Map<string, number>();
  readonly #options: ReturningClientsOptions;
  readonly #now: () => number;

  constructor(options: ReturningClientsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** A login from `address` succeeded: it moves to the young end. */
  remember(address: string): void {
    if (this.#options.ttlMs <= 0) return;
    const key = ipKey(address, this.#options.ipv6PrefixLength);
    this.#until.delete(key);
    this.#until.set(key, this.#now() + this.#options.ttlMs);
    if (this.#until.size > (this.#options.maxAddresses ?? MAX_RETURNING_CLIENT_ADDRESSES)) {
      const oldest = this.#until.keys().next().value;
      if (oldest !== undefined) this.#until.delete(oldest);
    }
  }

  /** Whether a login from `address` (or its IPv6 network) succeeded within the ttl. */
  has(address: string): boolean {
    const key = ipKey(address, this.#options.ipv6PrefixLength);
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#until.delete(key);
    return false;
  }
}

/**
 * How many of a process-wide bound's `max` places a connection may fill: all of them for a
 * returning client, all but the reserved share for anyone else. 0 stays 0 (no bound).
 */
export function placesFor(max: number, returning: boolean): number {
  return returning ? max : max - Math.floor(max / RETURNING_CLIENTS_SHARE_DIVISOR);
}
