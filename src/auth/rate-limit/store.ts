/**
 * Where the failure counters live: Redis (shared by every instance) or process memory (no Redis
 * configured, or the insurance while Redis is down). Both count an attempt BEFORE the backend is
 * asked (issue 9.2): `reserve` adds one to each counter at once, atomically per counter, and
 * refuses when a counter already holds max_failures; the verdict then keeps the point (a refused
 * password) or gives it back (a success, or no verdict at all). So however many guesses run in
 * parallel, at most max_failures of them are ever judged per window. When a kept failure leaves a
 * counter full, the counter lives on for `block` from then (the block). Both keep two companions
 * per user+IP pair: the trusted mark of a recent success and the fingerprints of wrong passwords
 * already counted.
 *
 * Store errors are thrown as they are, and so is a reply that cannot be the scripts' answer (a
 * corrupted byte: StoreReplyError); insurance.ts decides what an error means.
 */
import type { Cluster, Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { LimiterPolicy, RateLimitConfig } from '../../config/types.js';
import { MAX_MEMORY_LIMIT_KEYS } from '../../config/limits.js';
import { KEY_KINDS, storeKey, type AttemptKeys } from './keys.js';
import { activeLimiters, type LimiterKey } from './policy.js';

/** What reserve() did: counted the attempt on every active limiter, or nothing, because one is full. */
export type Reservation =
  | { readonly kind: 'reserved' }
  | { readonly kind: 'full'; readonly limiter: LimiterKey; readonly msLeft: number };

/** How a reservation ends (the store that made it must settle it). */
export interface Settlement {
  /** Gives the reservation back: the attempt was not judged. */
  release(keys: AttemptKeys): Promise<void>;
  /**
   * Keeps the reservation as a failure and starts the block of every counter it leaves full.
   * With `tag` (the wrong password's fingerprint) a repeat is given back instead: false.
   */
  fail(keys: AttemptKeys, tag: string | undefined): Promise<boolean>;
  /** A successful login: forget the pair's failures, trust the pair, give back the ip and user points. */
  succeed(keys: AttemptKeys): Promise<void>;
}

export interface LimitStore extends Settlement {
  /**
   * Counts one attempt in flight on every active limiter, or on none when one of them is full
   * (the per-user one never binds a pair trusted by an earlier success).
   */
  reserve(keys: AttemptKeys): Promise<Reservation>;
}

type Policies = Pick<RateLimitConfig, LimiterKey | 'keyPrefix' | 'trustedPairMs'>;

const LIMITER_KIND = { userIp: KEY_KINDS.userIp, ip: KEY_KINDS.ip, user: KEY_KINDS.user } as const;

/** The id each limiter counts an attempt under. */
export function limiterId(limiter: LimiterKey, keys: AttemptKeys): string {
  return limiter === 'userIp' ? keys.pair : limiter === 'ip' ? keys.ip : keys.userId;
}

/** Whole seconds for rate-limiter-flexible, rounded up (the config refuses less than 1 s). */
const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Redis answered something its command cannot return. RESP has no checksum, so a corrupted byte
 * (a broken middlebox, bad memory) parses as often as not: `:0` becomes `*0`, an empty array, or
 * `:1` becomes `:*`, which the parser reads as -6 points consumed, an open door for a blocked
 * counter. Such a reply is a store failure like any other, never a decision.
 */
export class StoreReplyError extends Error {
  readonly code = 'E_RATELIMIT_STORE_REPLY';
  constructor(what: string) {
    super(`Redis answered ${what}: the reply is corrupted`);
    this.name = 'StoreReplyError';
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * rate-limiter-flexible's own increment script (its lib/RateLimiterRedis.js), given through its
 * `customIncrTtlLuaScript` option and unchanged but for the reply: the TTL comes back as a string
 * with the count after it, "3599000:11", a second copy of the count in another RESP type. A
 * corrupted byte in the count's integer reply can still parse as a count that looks fine (`:11`
 * with a `*` for its last digit is read as 1*10-6 = 4, under max_failures: a guess let through a
 * block), but it no longer matches the copy (#checked). The library reads the count from the
 * integer and passes the TTL on untouched, as msBeforeNext.
 */
const INCR_TTL_WITH_COUNT_COPY = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') \
local consumed = redis.call('incrby', KEYS[1], ARGV[1]) \
local ttl = redis.call('pttl', KEYS[1]) \
if ttl == -1 then \
  redis.call('expire', KEYS[1], ARGV[2]) \
  ttl = 1000 * ARGV[2] \
end \
return {consumed, ttl .. ':' .. consumed} \
`;

/** The TTL and the copy of the count in an INCR_TTL_WITH_COUNT_COPY reply's msBeforeNext. */
const TTL_WITH_COUNT = /^(-?\d{1,15}):(\d{1,15})$/;

/**
 * EXISTS of the trusted mark, answered twice in two RESP types ({n, "n"}) for the same reason: a
 * bit that turns `:0` into `:1` would read as "trusted" and skip the per-user limit. The first
 * command of every reserve() (the fault-injection tests cue on it).
 */
export const TRUSTED_WITH_COPY = `local n = redis.call('exists', KEYS[1]) return {n, tostring(n)}`;

/**
 * Adds a wrong password's fingerprint to the pair's set, which lives as long as the pair's
 * counter window (ARGV[2] ms), and says whether it was new, twice ({added, "added"}): a 1 read
 * as 0 would give a new wrong password's place back as if it were a repeat.
 */
export const ADD_FINGERPRINT = `local added = redis.call('sadd', KEYS[1], ARGV[1]) redis.call('pexpire', KEYS[1], ARGV[2]) return {added, tostring(added)}`;

/** What a {n, "n"} answer (TRUSTED_WITH_COPY, ADD_FINGERPRINT) says, 0 or 1, or undefined when it is not that or its copies disagree. */
function answeredTwice(answer: unknown): 0 | 1 | undefined {
  if (!Array.isArray(answer) || answer.length !== 2) return undefined;
  const [n, copy] = answer as [unknown, unknown];
  return (n === 0 || n === 1) && copy === String(n) ? n : undefined;
}

/** Takes one point back, never below 0 and never creating a key that expired meanwhile. */
const GIVE_BACK = `local v = tonumber(redis.call('get', KEYS[1]))
if v ~= nil and v > 0 then return redis.call('decr', KEYS[1]) end
return 0`;

/** A counter that holds max_failures (ARGV[1]) lives for the block (ARGV[2] ms) from now. */
const BLOCK_IF_FULL = `local v = tonumber(redis.call('get', KEYS[1]))
if v ~= nil and v >= tonumber(ARGV[1]) then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
return 0`;

/** The shared store. The client has the offline queue off and a command timeout (redis-client.ts). */
export class RedisLimitStore implements LimitStore {
  readonly #client: Redis | Cluster;
  readonly #config: Policies;
  readonly #active: readonly LimiterKey[];
  readonly #limiters: Record<LimiterKey, RateLimiterRedis>;

  constructor(client: Redis | Cluster, config: Policies) {
    this.#client = client;
    this.#config = config;
    this.#active = activeLimiters(config);
    // consume() is rate-limiter-flexible's atomic increment (SET NX with the window, INCRBY) and
    // refuses past `points`. With points = max_failures, consume number max_failures is still
    // allowed and the next refused; no blockDuration: a refused reservation is given back, and
    // the block starts from the failure that fills the counter (BLOCK_IF_FULL), not from a
    // refusal, so guesses at a blocked key cannot prolong its block.
    const make = (limiter: LimiterKey, policy: LimiterPolicy) =>
      new RateLimiterRedis({
        storeClient: client,
        // Fail at once while the client is not connected, instead of waiting for a timeout.
        rejectIfRedisNotReady: true,
        keyPrefix: `${config.keyPrefix}:${LIMITER_KIND[limiter]}`,
        points: Math.max(policy.maxFailures, 1),
        duration: seconds(policy.windowMs),
        customIncrTtlLuaScript: INCR_TTL_WITH_COUNT_COPY,
      });
    this.#limiters = { userIp: make('userIp', config.userIp), ip: make('ip', config.ip), user: make('user', config.user) };
  }

  #key(limiter: LimiterKey, keys: AttemptKeys): string {
    return this.#limiters[limiter].getKey(limiterId(limiter, keys));
  }

  #trustedKey(keys: AttemptKeys): string {
    return storeKey(this.#config.keyPrefix, KEY_KINDS.trusted, keys.pair);
  }

  #giveBack(limiters: readonly LimiterKey[], keys: AttemptKeys): Promise<unknown> {
    // Issued in one tick: auto-pipelining sends them in one write per node (limiter keys hash to
    // different Cluster slots, so one MULTI or script over all of them is not possible).
    return Promise.all(limiters.map((limiter) => this.#client.eval(GIVE_BACK, 1, this.#key(limiter, keys))));
  }

  async reserve(keys: AttemptKeys): Promise<Reservation> {
    const [trusted, ...results] = await Promise.allSettled([
      this.#client.eval(TRUSTED_WITH_COPY, 1, this.#trustedKey(keys)),
      ...this.#active.map((limiter) => this.#limiters[limiter].consume(limiterId(limiter, keys))),
    ]);
    const failure = [trusted, ...results].find((r) => r.status === 'rejected' && !(r.reason instanceof RateLimiterRes));
    if (failure?.status === 'rejected') throw failure.reason;
    const checked = this.#checked(trusted, results);
    if (typeof checked === 'string') {
      // A byte that changed a reply's type or length shifts every later reply onto the wrong
      // command: the connection cannot be trusted any more, so a fresh one (the outage probe
      // finds it). The places this round trip took stay counted in Redis until their window ends.
      this.#client.disconnect(true);
      throw new StoreReplyError(checked);
    }
    const isTrusted = trusted?.status === 'fulfilled' && answeredTwice(trusted.value) === 1;
    const fullAt = results.findIndex((r, i) => r.status === 'rejected' && !(this.#active[i] === 'user' && isTrusted));
    if (fullAt === -1) return { kind: 'reserved' };
    // Every consume incremented its counter, the refused ones too: give them all back.
    await this.#giveBack(this.#active, keys);
    return { kind: 'full', limiter: this.#active[fullAt] ?? 'user', msLeft: Math.max(checked[fullAt] ?? 0, 0) };
  }

  /**
   * Each counter's TTL (ms) from reserve()'s replies, or what is wrong with them: the trusted mark
   * is 0 or 1 in both copies (TRUSTED_WITH_COPY), and each counter, just incremented, holds at
   * least 1, the same count in both copies (INCR_TTL_WITH_COUNT_COPY), and has a TTL (or none,
   * -1). No upper bound on the TTL: a counter keeps the one its window or block gave it when it
   * was made, so one made under a longer policy (before the config shortened it, or by another
   * instance of the fleet) outlives today's window and is no corruption; dropping the connection
   * for it would make every login from that address a store outage.
   */
  #checked(trusted: PromiseSettledResult<unknown> | undefined, results: readonly PromiseSettledResult<RateLimiterRes>[]): number[] | string {
    if (trusted?.status === 'fulfilled' && answeredTwice(trusted.value) === undefined) return `${JSON.stringify(trusted.value)} to EXISTS`;
    const ttls: number[] = [];
    for (const [i, result] of results.entries()) {
      const limiter = this.#active[i] ?? 'user';
      const res = result.status === 'fulfilled' ? result.value : (result.reason as RateLimiterRes);
      const copy = TTL_WITH_COUNT.exec(String(res.msBeforeNext));
      const ms = Number(copy?.[1]);
      if (copy === null || Number(copy[2]) !== res.consumedPoints || !Number.isSafeInteger(res.consumedPoints) || res.consumedPoints < 1 || !Number.isSafeInteger(ms) || ms < -1) {
        return `${res.consumedPoints} points, ${JSON.stringify(String(res.msBeforeNext).slice(0, 40))} (TTL:count) for the ${LIMITER_KIND[limiter]} counter`;
      }
      ttls.push(ms);
    }
    return ttls;
  }

  async release(keys: AttemptKeys): Promise<void> {
    await this.#giveBack(this.#active, keys);
  }

  async fail(keys: AttemptKeys, tag: string | undefined): Promise<boolean> {
    if (tag !== undefined) {
      const seen = storeKey(this.#config.keyPrefix, KEY_KINDS.seen, keys.pair);
      const answer = await this.#client.eval(ADD_FINGERPRINT, 1, seen, tag, this.#config.userIp.windowMs);
      const added = answeredTwice(answer);
      if (added === undefined) {
        // As in reserve(): the connection cannot be trusted any more. The failure stays counted.
        this.#client.disconnect(true);
        throw new StoreReplyError(`${JSON.stringify(answer)} to the fingerprint`);
      }
      if (added === 0) {
        await this.release(keys);
        return false;
      }
    }
    await Promise.all(
      this.#active.map((limiter) => {
        const policy = this.#config[limiter];
        return this.#client.eval(BLOCK_IF_FULL, 1, this.#key(limiter, keys), policy.maxFailures, policy.blockMs);
      }),
    );
    return true;
  }

  async succeed(keys: AttemptKeys): Promise<void> {
    const { keyPrefix, trustedPairMs } = this.#config;
    const forget = this.#client.multi().del(this.#key('userIp', keys), storeKey(keyPrefix, KEY_KINDS.seen, keys.pair));
    // trusted_for 0s trusts no pair (and PX 0 would be a Redis error).
    if (trustedPairMs > 0) forget.set(this.#trustedKey(keys), '1', 'PX', trustedPairMs);
    const [result] = await Promise.all([
      forget.exec(),
      this.#giveBack(
        this.#active.filter((limiter) => limiter !== 'userIp'),
        keys,
      ),
    ]);
    const failed = result?.find(([error]) => error !== null);
    if (failed?.[0]) throw failed[0];
  }

  /** A cheap liveness check for the recovery probe. */
  async ping(): Promise<void> {
    await this.#client.ping();
  }
}

// ---------------------------------------------------------------------------------------------

/** How many of the oldest keys a full map looks at for one it may drop. */
const EVICTION_PROBES = 64;

/**
 * Keys with an expiry, without a timer per key (a 30-day timer would overflow Node's 24.8 days),
 * and at most `maxEntries` of them: a spray of random usernames or addresses must not grow the
 * process without bound. When full, expired keys go first, then the oldest key that `keep` does
 * not protect (a Map iterates in insertion order), so the counters of the latest guesses are
 * kept, and a blocked counter is never dropped to make room: with no room left, set() refuses.
 */
class ExpiringMap<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #keep: (value: V) => boolean;
  #writesSinceSweep = 0;
  /** Live keys dropped to make room. */
  evicted = 0;

  constructor(maxEntries: number, keep: (value: V) => boolean = () => false) {
    this.#maxEntries = maxEntries;
    this.#keep = keep;
  }

  get size(): number {
    return this.#entries.size;
  }

  #entry(key: string): { value: V; expiresAt: number } | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  get(key: string): V | undefined {
    return this.#entry(key)?.value;
  }

  /** Milliseconds until `key` expires (0 if it has). */
  msLeft(key: string): number {
    const entry = this.#entry(key);
    return entry === undefined ? 0 : entry.expiresAt - Date.now();
  }

  /** Sets `key`; false, and nothing changed, when the map is full of keys it must keep. */
  set(key: string, value: V, ttlMs: number): boolean {
    // Amortised sweep, so keys nobody reads again do not pile up.
    if (++this.#writesSinceSweep >= 1_000) this.#sweep();
    if (!this.#entries.has(key) && this.#entries.size >= this.#maxEntries && !this.#makeRoom()) return false;
    this.#entries.set(key, { value, expiresAt: Date.now() + ttlMs });
    return true;
  }

  /** Drops one expired or unprotected key among the oldest; false if there is none. */
  #makeRoom(): boolean {
    const now = Date.now();
    let probes = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now || !this.#keep(entry.value)) {
        this.#entries.delete(key);
        if (entry.expiresAt > now) this.evicted++;
        return true;
      }
      if (++probes >= EVICTION_PROBES) break;
    }
    // The oldest keys are all protected: a full sweep may still free an expired one further on.
    const before = this.#entries.size;
    this.#sweep();
    return this.#entries.size < before;
  }

  #sweep(): void {
    this.#writesSinceSweep = 0;
    const now = Date.now();
    for (const [k, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(k);
  }

  /** Changes a live key's value, keeping its expiry. */
  update(key: string, value: V): void {
    const entry = this.#entry(key);
    if (entry !== undefined) entry.value = value;
  }

  /** Gives a live key a new expiry. */
  expire(key: string, ttlMs: number): void {
    const entry = this.#entry(key);
    if (entry !== undefined) entry.expiresAt = Date.now() + ttlMs;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}

/**
 * One process's store: with no Redis configured, and as the insurance while Redis is down. The
 * same numbers and the same arithmetic as Redis; every call does its work synchronously, so a
 * reservation is atomic here too.
 */
export class MemoryLimitStore implements LimitStore {
  readonly #config: Policies;
  readonly #active: readonly LimiterKey[];
  readonly #counters: ExpiringMap<number>;
  readonly #trusted: ExpiringMap<true>;
  readonly #seen: ExpiringMap<Set<string>>;

  constructor(config: Policies, bounds: { readonly maxKeys: number } = { maxKeys: MAX_MEMORY_LIMIT_KEYS }) {
    this.#config = config;
    this.#active = activeLimiters(config);
    // A counter that has reached the smallest max_failures may hold a block: never dropped for room.
    const blocking = Math.min(...this.#active.map((limiter) => config[limiter].maxFailures));
    this.#counters = new ExpiringMap(bounds.maxKeys, (count) => count >= blocking);
    this.#trusted = new ExpiringMap(bounds.maxKeys);
    this.#seen = new ExpiringMap(bounds.maxKeys);
  }

  /** Keys held, counters and companions together. */
  get size(): number {
    return this.#counters.size + this.#trusted.size + this.#seen.size;
  }

  /** Live keys dropped to stay within the bound since start. */
  get evicted(): number {
    return this.#counters.evicted + this.#trusted.evicted + this.#seen.evicted;
  }

  #key(limiter: LimiterKey, keys: AttemptKeys): string {
    return `${LIMITER_KIND[limiter]}:${limiterId(limiter, keys)}`;
  }

  #giveBack(limiters: readonly LimiterKey[], keys: AttemptKeys): void {
    for (const limiter of limiters) {
      const key = this.#key(limiter, keys);
      const count = this.#counters.get(key);
      if (count !== undefined && count > 0) this.#counters.update(key, count - 1);
    }
  }

  async reserve(keys: AttemptKeys): Promise<Reservation> {
    const trusted = this.#trusted.get(keys.pair) === true;
    for (const limiter of this.#active) {
      if (limiter === 'user' && trusted) continue;
      const key = this.#key(limiter, keys);
      if ((this.#counters.get(key) ?? 0) >= this.#config[limiter].maxFailures) {
        return { kind: 'full', limiter, msLeft: this.#counters.msLeft(key) };
      }
    }
    const counted: LimiterKey[] = [];
    for (const limiter of this.#active) {
      const key = this.#key(limiter, keys);
      const count = this.#counters.get(key);
      if (count !== undefined) this.#counters.update(key, count + 1);
      else if (!this.#counters.set(key, 1, this.#config[limiter].windowMs)) {
        // The store is full of counters that hold blocks: refuse rather than forget one.
        this.#giveBack(counted, keys);
        return { kind: 'full', limiter, msLeft: 0 };
      }
      counted.push(limiter);
    }
    return { kind: 'reserved' };
  }

  async release(keys: AttemptKeys): Promise<void> {
    this.#giveBack(this.#active, keys);
  }

  async fail(keys: AttemptKeys, tag: string | undefined): Promise<boolean> {
    if (tag !== undefined) {
      const seen = this.#seen.get(keys.pair) ?? new Set<string>();
      if (seen.has(tag)) {
        this.#giveBack(this.#active, keys);
        return false;
      }
      seen.add(tag);
      this.#seen.set(keys.pair, seen, this.#config.userIp.windowMs);
    }
    for (const limiter of this.#active) {
      const key = this.#key(limiter, keys);
      const policy = this.#config[limiter];
      if ((this.#counters.get(key) ?? 0) >= policy.maxFailures) this.#counters.expire(key, policy.blockMs);
    }
    return true;
  }

  async succeed(keys: AttemptKeys): Promise<void> {
    this.#counters.delete(this.#key('userIp', keys));
    this.#seen.delete(keys.pair);
    if (this.#config.trustedPairMs > 0) this.#trusted.set(keys.pair, true, this.#config.trustedPairMs);
    this.#giveBack(
      this.#active.filter((limiter) => limiter !== 'userIp'),
      keys,
    );
  }
}
