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
 * Store errors are thrown as they are; insurance.ts decides what an error means.
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { RateLimitConfig } from '../../config/types.js';
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

/** Whole seconds for a Redis window, rounded up (the config refuses less than 1 s). */
const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

// ---------------------------------------------------------------------------------------------

/**
 * Takes one place in each counter of KEYS (ARGV[1 + i]: its window in seconds), as
 * rate-limiter-flexible's consume() did: a counter is created at 0 with its window (SET NX EX),
 * then incremented. With ARGV[1] = '1' the last key is the pair's trusted mark, only read.
 * Returns the mark (1/0, or -1 when not asked), then each counter's count and ms left.
 */
const RESERVE = `local trustedAsked = ARGV[1] == '1'
local counters = #KEYS
local out = {-1}
if trustedAsked then
  counters = counters - 1
  out[1] = redis.call('exists', KEYS[#KEYS])
end
for i = 1, counters do
  local window = ARGV[i + 1]
  redis.call('set', KEYS[i], 0, 'EX', window, 'NX')
  out[2 * i] = redis.call('incr', KEYS[i])
  local ttl = redis.call('pttl', KEYS[i])
  if ttl == -1 then
    redis.call('expire', KEYS[i], window)
    ttl = 1000 * window
  end
  out[2 * i + 1] = ttl
end
return out`;

/**
 * Settles a reservation: KEYS[i] gets the operation ARGV[3i-2] with the numbers ARGV[3i-1],
 * ARGV[3i]: 'del'; 'back' takes one place back (never below 0, never recreating an expired key);
 * 'trust' sets the trusted mark for ARGV[3i-1] ms; 'block' makes a counter that holds
 * ARGV[3i-1] (max_failures) live ARGV[3i] ms from now (the block starts at the failure that fills it).
 */
const SETTLE = `for i = 1, #KEYS do
  local op = ARGV[3 * i - 2]
  if op == 'del' then
    redis.call('del', KEYS[i])
  elseif op == 'back' then
    local v = tonumber(redis.call('get', KEYS[i]))
    if v ~= nil and v > 0 then redis.call('decr', KEYS[i]) end
  elseif op == 'trust' then
    redis.call('set', KEYS[i], '1', 'PX', ARGV[3 * i - 1])
  elseif op == 'block' then
    local v = tonumber(redis.call('get', KEYS[i]))
    if v ~= nil and v >= tonumber(ARGV[3 * i - 1]) then redis.call('pexpire', KEYS[i], ARGV[3 * i]) end
  end
end
return 1`;

/**
 * A script run by its SHA1 (EVALSHA), sent whole (EVAL) only when Redis does not have it yet (a
 * new or restarted Redis). Not ioredis's defineCommand: auto-pipelining on a Cluster would group
 * such a command by its first argument (the number of keys), not by its first key, and put keys
 * of different slots into one pipeline; EVALSHA and EVAL it groups by their keys.
 */
class Script {
  readonly #sha: string;
  constructor(readonly lua: string) {
    this.#sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(client: StoreClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

const RESERVE_SCRIPT = new Script(RESERVE);
const SETTLE_SCRIPT = new Script(SETTLE);

/** What the store needs of its client: scripts, a MULTI on one slot, a ping. */
type StoreClient = Pick<Redis, 'evalsha' | 'eval' | 'multi' | 'ping'>;

type SettleOperation = readonly [key: string, operation: 'del' | 'back' | 'trust' | 'block', a: number, b: number];

/**
 * The Redis Cluster hash slot's tag of a key (Redis's rule: what is between the first '{' and
 * the next '}', if not empty; else the whole key). Keys with one tag may share a script call.
 */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = open === -1 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/**
 * The shared store. The client has the offline queue off and a command timeout (redis-client.ts).
 * Each step of a login is one script call on one Redis (a Lua script runs atomically and costs
 * the client one command), and one per hash slot on a Cluster, where the counters of one
 * attempt live in different slots (the ip and user counters are shared with other attempts).
 */
export class RedisLimitStore implements LimitStore {
  readonly #client: StoreClient;
  readonly #config: Policies;
  readonly #active: readonly LimiterKey[];
  readonly #cluster: boolean;

  constructor(client: Redis | Cluster, config: Policies) {
    // A Cluster client has the same commands; its types say so less precisely.
    this.#client = client as StoreClient;
    this.#config = config;
    this.#active = activeLimiters(config);
    this.#cluster = 'isCluster' in client && client.isCluster === true;
  }

  #key(limiter: LimiterKey, keys: AttemptKeys): string {
    return storeKey(this.#config.keyPrefix, LIMITER_KIND[limiter], limiterId(limiter, keys));
  }

  #trustedKey(keys: AttemptKeys): string {
    return storeKey(this.#config.keyPrefix, KEY_KINDS.trusted, keys.pair);
  }

  /** Keys in the groups one script call may touch: all together on one Redis, by hash slot on a Cluster. */
  #grouped<T extends { readonly key: string }>(items: readonly T[]): (readonly T[])[] {
    if (!this.#cluster) return [items];
    const groups = new Map<string, T[]>();
    for (const item of items) {
      const tag = hashTag(item.key);
      const group = groups.get(tag);
      if (group === undefined) groups.set(tag, [item]);
      else group.push(item);
    }
    return [...groups.values()];
  }

  async #settle(operations: readonly SettleOperation[]): Promise<void> {
    const groups = this.#grouped(operations.map((operation) => ({ key: operation[0], operation })));
    await Promise.all(
      groups.map((group) =>
        SETTLE_SCRIPT.run(
          this.#client,
          group.map((item) => item.key),
          group.flatMap(({ operation: [, name, a, b] }) => [name, a, b]),
        ),
      ),
    );
  }

  #giveBack(limiters: readonly LimiterKey[], keys: AttemptKeys): Promise<void> {
    return this.#settle(limiters.map((limiter) => [this.#key(limiter, keys), 'back', 0, 0] as const));
  }

  async reserve(keys: AttemptKeys): Promise<Reservation> {
    // The trusted mark matters only to the per-user limiter; it is read with the pair's counter.
    const askTrust = this.#active.includes('user');
    const items = [
      ...this.#active.map((limiter) => ({ key: this.#key(limiter, keys), limiter })),
      ...(askTrust ? [{ key: this.#trustedKey(keys), limiter: undefined }] : []),
    ];
    const counts = new Map<LimiterKey, { count: number; msLeft: number }>();
    let trusted = false;
    await Promise.all(
      this.#grouped(items).map(async (group) => {
        const counters = group.filter((item) => item.limiter !== undefined);
        const withTrust = counters.length < group.length;
        const windows = counters.map((item) => seconds(this.#config[item.limiter!].windowMs));
        const out = (await RESERVE_SCRIPT.run(
          this.#client,
          [...counters.map((item) => item.key), ...(withTrust ? [this.#trustedKey(keys)] : [])],
          [withTrust ? '1' : '0', ...windows],
        )) as number[];
        if (withTrust) trusted = out[0] === 1;
        counters.forEach((item, i) => counts.set(item.limiter!, { count: Number(out[2 * i + 1]), msLeft: Number(out[2 * i + 2]) }));
      }),
    );
    // A counter past max_failures is full; the per-user one never binds a trusted pair.
    const full = this.#active.find(
      (limiter) => (counts.get(limiter)?.count ?? 0) > Math.max(this.#config[limiter].maxFailures, 1) && !(limiter === 'user' && trusted),
    );
    if (full === undefined) return { kind: 'reserved' };
    // Every counter was incremented, the full one too: give them all back.
    await this.#giveBack(this.#active, keys);
    return { kind: 'full', limiter: full, msLeft: Math.max(counts.get(full)?.msLeft ?? 0, 0) };
  }

  async release(keys: AttemptKeys): Promise<void> {
    await this.#giveBack(this.#active, keys);
  }

  async fail(keys: AttemptKeys, tag: string | undefined): Promise<boolean> {
    if (tag !== undefined) {
      const seen = storeKey(this.#config.keyPrefix, KEY_KINDS.seen, keys.pair);
      // The set lives as long as the pair's counter window; both keys share the pair's hash slot.
      const result = await this.#client.multi().sadd(seen, tag).pexpire(seen, this.#config.userIp.windowMs).exec();
      const [added] = result ?? [];
      if (added?.[0]) throw added[0];
      if (added?.[1] === 0) {
        await this.release(keys);
        return false;
      }
    }
    await this.#settle(
      this.#active.map((limiter) => {
        const policy = this.#config[limiter];
        return [this.#key(limiter, keys), 'block', policy.maxFailures, policy.blockMs] as const;
      }),
    );
    return true;
  }

  async succeed(keys: AttemptKeys): Promise<void> {
    const { keyPrefix, trustedPairMs } = this.#config;
    await this.#settle([
      [this.#key('userIp', keys), 'del', 0, 0],
      [storeKey(keyPrefix, KEY_KINDS.seen, keys.pair), 'del', 0, 0],
      // trusted_for 0s trusts no pair (and PX 0 would be a Redis error).
      ...(trustedPairMs > 0 ? [[this.#trustedKey(keys), 'trust', trustedPairMs, 0] as const] : []),
      ...this.#active.filter((limiter) => limiter !== 'userIp').map((limiter) => [this.#key(limiter, keys), 'back', 0, 0] as const),
    ]);
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
