/**
 * The limiter's Redis connection, lent to the other state that every instance must agree on
 * (what each backend offered before, how each user logs in to a backend that offers APOP). Each
 * of those keeps a copy in the process and asks Redis first; while Redis is down or slow, the
 * copy answers alone. The outage is logged once, and the first answer from Redis afterwards ends
 * it: there is no probe, because every login asks again (the client fails at once while it is
 * disconnected: no offline queue).
 */
import { createHmac } from 'node:crypto';
import type { Logger } from '../../observability/log.js';
import type { RedisClient } from './redis-client.js';
import { withDeadline } from './insurance.js';

/** The kinds of shared keys, beside the limiter's (keys.ts): `PREFIX:KIND:ID`. */
export const SHARED_KEY_KINDS = {
  /** What a backend (HOST:PORT) offered before: a hash, one per configured backend, no expiry. */
  offer: 'offer',
  /** How a user logs in to a backend offering APOP, under an HMAC of backend and user; expires. */
  apopUser: 'apopuser',
} as const;

export type SharedKeyKind = (typeof SHARED_KEY_KINDS)[keyof typeof SHARED_KEY_KINDS];

/** `PREFIX:KIND:ID`, as the limiter's keys are (keys.ts storeKey). */
export const sharedKey = (prefix: string, kind: SharedKeyKind, id: string): string => `${prefix}:${kind}:${id}`;

/** Hex characters of the HMAC that names a user's key: 128 bits, no collision in practice. */
const USER_ID_HEX = 32;

export class SharedRedis {
  #down = false;

  constructor(
    private readonly client: RedisClient,
    /** rate_limit.key_prefix: one Redis can hold several deployments. */
    readonly prefix: string,
    /** The limiter's HMAC key (hmac.ts): Redis sees no username, only its keyed hash. */
    private readonly hmacKey: Buffer,
    private readonly deadlineMs: number,
    private readonly log: Logger,
  ) {}

  key(kind: SharedKeyKind, id: string): string {
    return sharedKey(this.prefix, kind, id);
  }

  /** An id for `parts` that names no one: a truncated HMAC, as the limiter's password tags are. */
  hashedId(...parts: readonly string[]): string {
    const hmac = createHmac('sha256', this.hmacKey);
    for (const part of parts) hmac.update(part, 'utf8').update(Buffer.from([0]));
    return hmac.digest('hex').slice(0, USER_ID_HEX);
  }

  /**
   * Runs `operation` on Redis under the command deadline. Undefined when Redis is not connected,
   * fails or is too slow: the caller answers from its own copy.
   */
  async attempt<T>(what: string, operation: (client: RedisClient) => Promise<T>): Promise<T | undefined> {
    if (this.client.status !== 'ready') {
      this.#markDown(new Error(`Redis connection is ${this.client.status}`), what);
      return undefined;
    }
    try {
      const result = await withDeadline(operation(this.client), this.deadlineMs);
      if (this.#down) {
        this.#down = false;
        this.log.info({ shared: what }, 'shared state (Redis) is back: backend memory and APOP users are shared again');
      }
      return result;
    } catch (error) {
      this.#markDown(error, what);
      return undefined;
    }
  }

  #markDown(cause: unknown, what: string): void {
    if (this.#down) return;
    this.#down = true;
    this.log.warn(
      { shared: what, reason: cause instanceof Error ? cause.message : String(cause) },
      'shared state (Redis) unavailable: what backends offered and how users log in to APOP backends are kept in this process until it is back',
    );
  }
}
