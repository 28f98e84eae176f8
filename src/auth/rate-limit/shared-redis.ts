/**
 * The limiter's Redis connection, lent to the other state that every instance must agree on
 * (what each backend offered before, how each user logs in to a backend that offers APOP). Each
 * of those keeps a copy in the process and asks Redis first; while Redis is down or slow, the
 * copy answers alone. The outage is logged once; a probe pings every second and ends it, as the
 * limiter's insurance does (insurance.ts).
 */
import { createHmac } from 'node:crypto';
import type { Logger } from '../../observability/log.js';
import type { RedisClient } from './redis-client.js';
import { PROBE_INTERVAL_MS, withDeadline } from './insurance.js';

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
  #probe: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: RedisClient,
    /** rate_limit.key_prefix: one Redis can hold several deployments. */
    readonly prefix: string,
    /** The limiter's HMAC key (hmac.ts): Redis sees no username, only its keyed hash. */
    private readonly hmacKey: Buffer,
    private readonly deadlineMs: number,
    private readonly log: Logger,
    /** Whether the limiter's store has Redis: when it has found Redis down, no login waits here for it too. */
    private readonly limiterUp: () => boolean = () => true,
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
   * Runs `operation` on Redis under the command deadline. Undefined, at once, while Redis is
   * known to be down (a probe finds it back), and when it fails or is too slow: the caller
   * answers from its own copy. So a hung Redis costs a login at most one deadline, not one per call.
   */
  async attempt<T>(what: string, operation: (client: RedisClient) => Promise<T>): Promise<T | undefined> {
    if (this.#down) return undefined;
    if (this.client.status !== 'ready' || !this.limiterUp()) {
      this.#markDown(new Error(`Redis connection is ${this.client.status === 'ready' ? 'failing the limiter' : this.client.status}`), what);
      return undefined;
    }
    try {
      return await withDeadline(operation(this.client), this.deadlineMs);
    } catch (error) {
      this.#markDown(error, what);
      return undefined;
    }
  }

  close(): void {
    clearInterval(this.#probe);
  }

  #markDown(cause: unknown, what: string): void {
    if (this.#down) return;
    this.#down = true;
    this.log.warn(
      { shared: what, reason: cause instanceof Error ? cause.message : String(cause) },
      'shared state (Redis) unavailable: what backends offered and how users log in to APOP backends are kept in this process until it is back',
    );
    this.#probe = setInterval(() => void this.#probeOnce(), PROBE_INTERVAL_MS);
    this.#probe.unref();
  }

  async #probeOnce(): Promise<void> {
    if (this.client.status !== 'ready' || !this.limiterUp()) return;
    try {
      await withDeadline(this.client.ping(), this.deadlineMs);
    } catch {
      return; // still down; the next tick tries again
    }
    if (!this.#down) return;
    this.#down = false;
    clearInterval(this.#probe);
    this.log.info('shared state (Redis) is back: backend memory and APOP users are shared again');
  }
}
