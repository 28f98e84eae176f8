/**
 * Where the failure counters live: Redis (shared by every instance) or process memory (no Redis
 * configured, or the insurance while Redis is down). Both follow rate-limiter-flexible's
 * login-protection pattern: read before the attempt, consume on a refused password, delete the
 * user+IP counter on success. Both keep two companions per user+IP pair: the trusted mark of a
 * recent success and the fingerprints of wrong passwords already counted.
 *
 * Store errors are thrown as they are; insurance.ts decides what an error means.
 */
import type { Cluster, Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { LimiterPolicy, RateLimitConfig } from '../../config/types.js';
import { MAX_DURATION_MS } from '../../config/values.js';
import { KEY_KINDS, storeKey, type AttemptKeys } from './keys.js';
import { LIMITERS, type Counter, type LimiterKey, type Snapshot } from './policy.js';

export interface LimitStore {
  /** Reads the three counters and the trusted mark: one round trip. */
  read(keys: AttemptKeys): Promise<Snapshot>;
  /** Counts one refused password (`tag` is its fingerprint). False when it was a repeat, not counted. */
  fail(keys: AttemptKeys, tag: string): Promise<boolean>;
  /** A successful login: forget the pair's failures, trust the pair. */
  succeed(keys: AttemptKeys): Promise<void>;
}

type Policies = Pick<RateLimitConfig, LimiterKey | 'keyPrefix' | 'trustedPairMs'>;

const LIMITER_KIND = { userIp: KEY_KINDS.userIp, ip: KEY_KINDS.ip, user: KEY_KINDS.user } as const;

/** The id each limiter counts an attempt under. */
export function limiterId(limiter: LimiterKey, keys: AttemptKeys): string {
  return limiter === 'userIp' ? keys.pair : limiter === 'ip' ? keys.ip : keys.userId;
}

/**
 * rate-limiter-flexible options for one limiter. `points` is one less than max_failures, and the
 * consume that crosses it blocks the key for `block`: so the key holds max_failures while blocked.
 */
function limiterOptions(prefix: string, limiter: LimiterKey, policy: LimiterPolicy, maxMs: number) {
  const seconds = (ms: number) => Math.max(1, Math.min(Math.ceil(ms / 1000), Math.floor(maxMs / 1000)));
  return {
    keyPrefix: `${prefix}:${LIMITER_KIND[limiter]}`,
    points: policy.maxFailures - 1,
    duration: seconds(policy.windowMs),
    blockDuration: seconds(policy.blockMs),
  };
}

/** Consumes one point on each limiter; a RateLimiterRes rejection is a block, not an error. */
async function consumeAll(limiters: Record<LimiterKey, RateLimiterAbstract>, keys: AttemptKeys): Promise<void> {
  const results = await Promise.allSettled(LIMITERS.map((limiter) => limiters[limiter].consume(limiterId(limiter, keys))));
  for (const result of results) {
    if (result.status === 'rejected' && !(result.reason instanceof RateLimiterRes)) throw result.reason;
  }
}

// ---------------------------------------------------------------------------------------------

/** The shared store. The client has the offline queue off and a command timeout (redis-client.ts). */
export class RedisLimitStore implements LimitStore {
  readonly #client: Redis | Cluster;
  readonly #config: Policies;
  readonly #limiters: Record<LimiterKey, RateLimiterRedis>;

  constructor(client: Redis | Cluster, config: Policies) {
    this.#client = client;
    this.#config = config;
    const make = (limiter: LimiterKey) =>
      new RateLimiterRedis({
        storeClient: client,
        // Fail at once while the client is not connected, instead of waiting for a timeout.
        rejectIfRedisNotReady: true,
        ...limiterOptions(config.keyPrefix, limiter, config[limiter], Number.MAX_SAFE_INTEGER),
      });
    this.#limiters = { userIp: make('userIp'), ip: make('ip'), user: make('user') };
  }

  #key(limiter: LimiterKey, keys: AttemptKeys): string {
    return this.#limiters[limiter].getKey(limiterId(limiter, keys));
  }

  async read(keys: AttemptKeys): Promise<Snapshot> {
    const client = this.#client;
    // Issued in one tick: the client's auto-pipelining sends them in one write per node, so the
    // hot path of a login costs one round trip (limiter keys hash to different Cluster slots, so
    // a single MULTI is not possible).
    const read = (limiter: LimiterKey) => {
      const key = this.#key(limiter, keys);
      return Promise.all([client.get(key), client.pttl(key)]);
    };
    const [userIp, ip, user, trusted] = await Promise.all([
      read('userIp'),
      read('ip'),
      read('user'),
      client.exists(storeKey(this.#config.keyPrefix, KEY_KINDS.trusted, keys.pair)),
    ]);
    const counter = ([value, ttl]: [string | null, number]): Counter | undefined =>
      value === null ? undefined : { consumed: Number(value), msLeft: ttl };
    return { userIp: counter(userIp), ip: counter(ip), user: counter(user), trusted: trusted === 1 };
  }

  async fail(keys: AttemptKeys, tag: string): Promise<boolean> {
    const seen = storeKey(this.#config.keyPrefix, KEY_KINDS.seen, keys.pair);
    // The set lives as long as the pair's counter window; both keys share the pair's hash slot.
    const result = await this.#client.multi().sadd(seen, tag).pexpire(seen, this.#config.userIp.windowMs).exec();
    const [added] = result ?? [];
    if (added?.[0]) throw added[0];
    if (added?.[1] === 0) return false;
    await consumeAll(this.#limiters, keys);
    return true;
  }

  async succeed(keys: AttemptKeys): Promise<void> {
    const { keyPrefix, trustedPairMs } = this.#config;
    const result = await this.#client
      .multi()
      .del(this.#key('userIp', keys), storeKey(keyPrefix, KEY_KINDS.seen, keys.pair))
      .set(storeKey(keyPrefix, KEY_KINDS.trusted, keys.pair), '1', 'PX', trustedPairMs)
      .exec();
    const failed = result?.find(([error]) => error !== null);
    if (failed?.[0]) throw failed[0];
  }

  /** A cheap liveness check for the recovery probe. */
  async ping(): Promise<void> {
    await this.#client.ping();
  }
}

// ---------------------------------------------------------------------------------------------

/** Keys with an expiry, without a timer per key (a 30-day timer would overflow Node's 24.8 days). */
class ExpiringMap<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();
  #writesSinceSweep = 0;

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: V, ttlMs: number): void {
    this.#entries.set(key, { value, expiresAt: Date.now() + ttlMs });
    // Amortised sweep, so keys nobody reads again do not pile up.
    if (++this.#writesSinceSweep >= 1_000) {
      this.#writesSinceSweep = 0;
      const now = Date.now();
      for (const [k, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(k);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}

/**
 * One process's store: with no Redis configured, and as the insurance while Redis is down. The
 * same numbers, except that windows longer than Node's timer limit (24.8 days) are cut to it:
 * rate-limiter-flexible's memory store expires each key with a setTimeout.
 */
export class MemoryLimitStore implements LimitStore {
  readonly #config: Policies;
  readonly #limiters: Record<LimiterKey, RateLimiterMemory>;
  readonly #trusted = new ExpiringMap<true>();
  readonly #seen = new ExpiringMap<Set<string>>();

  constructor(config: Policies) {
    this.#config = config;
    const make = (limiter: LimiterKey) =>
      new RateLimiterMemory(limiterOptions(config.keyPrefix, limiter, config[limiter], MAX_DURATION_MS));
    this.#limiters = { userIp: make('userIp'), ip: make('ip'), user: make('user') };
  }

  async read(keys: AttemptKeys): Promise<Snapshot> {
    const counters = await Promise.all(LIMITERS.map((limiter) => this.#limiters[limiter].get(limiterId(limiter, keys))));
    const counter = (res: RateLimiterRes | null | undefined): Counter | undefined =>
      res === null || res === undefined ? undefined : { consumed: res.consumedPoints, msLeft: res.msBeforeNext };
    return {
      userIp: counter(counters[0]),
      ip: counter(counters[1]),
      user: counter(counters[2]),
      trusted: this.#trusted.get(keys.pair) === true,
    };
  }

  async fail(keys: AttemptKeys, tag: string): Promise<boolean> {
    const seen = this.#seen.get(keys.pair) ?? new Set<string>();
    if (seen.has(tag)) return false;
    seen.add(tag);
    this.#seen.set(keys.pair, seen, this.#config.userIp.windowMs);
    await consumeAll(this.#limiters, keys);
    return true;
  }

  async succeed(keys: AttemptKeys): Promise<void> {
    await this.#limiters.userIp.delete(limiterId('userIp', keys));
    this.#seen.delete(keys.pair);
    this.#trusted.set(keys.pair, true, this.#config.trustedPairMs);
  }
}
