/**
 * What each backend offered before (memory.ts), shared by every instance through Redis: a
 * downgrade one instance would refuse must be refused by all, or an impostor need only reach the
 * instance that has not seen the real server yet. Redis holds one hash per backend address
 * (`PREFIX:offer:HOST:PORT`), only ever raised, atomically (RAISE below), so two instances that
 * see a stronger offer at once both leave the stronger of the two. The keys are the backends
 * logged in to (the configured ones, and unlisted addresses auth_http routes to); each expires
 * REMEMBERED_OFFER_MS after the last login that read it (each instance pushes the expiry back at
 * most once per OFFER_REFRESH_MS), so only a backend no instance has used for that long is
 * forgotten in Redis (the files still remember).
 *
 * Every instance keeps its state_dir file as well, and a login is refused if either Redis or the
 * file remembers more than the backend offers now; whatever the file knows that Redis does not
 * (learnt during an outage, or before Redis was configured) is raised into Redis at the next
 * login, so the other instances learn it too. While Redis is down the file decides alone, as
 * without Redis. So accepting a backend changed on purpose takes `backend forget --config` on
 * each instance (the Redis key and that instance's file): the memory fails closed.
 */
import type { SharedRedis } from '../auth/rate-limit/shared-redis.js';
import { SHARED_KEY_KINDS, sharedKey } from '../auth/rate-limit/shared-redis.js';
import type { RedisClient } from '../auth/rate-limit/redis-client.js';
import { MAX_REMEMBERED_BACKEND_ADDRESSES, REMEMBERED_OFFER_MS } from '../config/limits.js';
import { BackendMemory, isRememberedBackend, shellWord, judgeOffer, STRENGTHS, type BackendOffer, type BackendStrength, type OfferVerdict, type RememberedBackend } from './memory.js';

/** What a login checks an offer against; the file alone (BackendMemory) or Redis with it. */
export interface OfferMemory {
  observe(address: string, offer: BackendOffer): OfferVerdict | Promise<OfferVerdict>;
}

/**
 * Raises the hash in KEYS[1] to at least ARGV (strongest, stls 0/1, now) and keeps it for ARGV[4]
 * ms: the mechanism only goes up (by ARGV[5..], the names weakest first), STLS once seen stays,
 * firstSeen is kept.
 */
const RAISE = `local ranks = {}
for i = 5, #ARGV do ranks[ARGV[i]] = i end
local held = redis.call('hmget', KEYS[1], 'strongest', 'stls', 'firstSeen')
local strongest = ARGV[1]
if held[1] and ranks[held[1]] and ranks[held[1]] > ranks[strongest] then strongest = held[1] end
local stls = ARGV[2]
if held[2] == '1' then stls = '1' end
redis.call('hset', KEYS[1], 'strongest', strongest, 'stls', stls, 'firstSeen', held[3] or ARGV[3], 'changed', ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[4])
return 1`;

/**
 * How often one process pushes back a key's expiry (REMEMBERED_OFFER_MS, a quarter): a login
 * reads the key every time, but a refresh per login would be three more commands (a MULTI) for
 * nothing. Any instance that logs in keeps the key alive.
 */
export const OFFER_REFRESH_MS = 60 * 60 * 1000;

/** The hash at `key`; its expiry pushed back too when `refresh`, in the same write (auto-pipelining). */
async function read(client: RedisClient, key: string, refresh: boolean): Promise<Record<string, string>> {
  const [hash] = await Promise.all([client.hgetall(key), refresh ? client.pexpire(key, REMEMBERED_OFFER_MS) : undefined]);
  return hash;
}

export class SharedBackendMemory implements OfferMemory {
  /**
   * When this process last pushed back each key's expiry (ms since the epoch), the one pushed
   * back longest ago first. Bounded by `maxAddresses`, not by the configured backends: a route
   * to an unlisted address may name any.
   */
  readonly #refreshedAt = new Map<string, number>();

  constructor(
    readonly local: BackendMemory,
    private readonly shared: SharedRedis,
    private readonly maxAddresses = MAX_REMEMBERED_BACKEND_ADDRESSES,
  ) {}

  #key(address: string): string {
    return this.shared.key(SHARED_KEY_KINDS.offer, address);
  }

  async observe(address: string, offer: BackendOffer, now = new Date()): Promise<OfferVerdict> {
    const key = this.#key(address);
    const refresh = now.getTime() - (this.#refreshedAt.get(key) ?? -Infinity) >= OFFER_REFRESH_MS;
    const held = await this.shared.attempt('backend memory', (client) => read(client, key, refresh));
    if (refresh && held !== undefined) this.#refreshed(key, now.getTime());
    // The file judges every login (and fails closed on its own problems); Redis adds the other instances' view.
    const localVerdict = this.local.observe(address, offer, now);
    if (held === undefined) return localVerdict;
    const remembered = fromHash(held);
    if (remembered === 'malformed') {
      return { kind: 'refuse', reason: `the shared memory of the backend ${address} in Redis (${key}) is malformed`, hint: `run "redis-cli DEL ${key}"` };
    }
    const hint =
      `run "popwarden backend forget ${shellWord(address)} --config FILE" on each instance (it deletes ${key} in Redis, ` +
      'the memory every instance shares, and the instance\'s own copy)';
    const judged = judgeOffer(address, remembered, offer, now, hint);
    if (judged.verdict.kind === 'refuse') return judged.verdict;
    const known = strongerOf(judged.remember ?? remembered, localEntry(this.local, address));
    if (known !== undefined && (remembered === undefined || isStronger(known, remembered))) {
      // Not written: the file has it, and the next login tries again.
      await this.shared.attempt('backend memory', (client) => client.eval(RAISE, 1, key, known.strongest, known.stls ? '1' : '0', now.toISOString(), REMEMBERED_OFFER_MS, ...STRENGTHS));
    }
    return localVerdict;
  }

  /** Notes a pushed-back expiry; past the bound the one pushed back longest ago is forgotten (its next login pushes again). */
  #refreshed(key: string, at: number): void {
    this.#refreshedAt.delete(key);
    if (this.#refreshedAt.size >= this.maxAddresses) this.#refreshedAt.delete(this.#refreshedAt.keys().next().value!);
    this.#refreshedAt.set(key, at);
  }
}

const rankOf = (entry: { strongest: BackendStrength }): number => STRENGTHS.indexOf(entry.strongest);

const isStronger = (a: RememberedBackend, b: RememberedBackend): boolean => rankOf(a) > rankOf(b) || (a.stls && !b.stls);

/** The join of two memories: the stronger mechanism, STLS if either saw it. */
function strongerOf(a: RememberedBackend | undefined, b: RememberedBackend | undefined): RememberedBackend | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return { ...(rankOf(a) >= rankOf(b) ? a : b), stls: a.stls || b.stls };
}

function localEntry(memory: BackendMemory, address: string): RememberedBackend | undefined {
  try {
    return memory.entries()[address];
  } catch {
    return undefined; // observe() has already refused this login for it
  }
}

/** A hash as Redis returns it (no fields: nothing remembered) as a remembered offer. */
function fromHash(hash: Record<string, string>): RememberedBackend | undefined | 'malformed' {
  if (Object.keys(hash).length === 0) return undefined;
  const entry = { strongest: hash['strongest'], stls: hash['stls'] === '1', firstSeen: hash['firstSeen'] ?? '', changed: hash['changed'] ?? '' };
  return isRememberedBackend(entry as Partial<RememberedBackend>) ? (entry as RememberedBackend) : 'malformed';
}

/** The Redis key of what `address` offered, under `prefix`. */
export const sharedOfferKey = (prefix: string, address: string): string => sharedKey(prefix, SHARED_KEY_KINDS.offer, address);

/** What Redis remembers of `address` under `prefix` (for `popwarden backend show`). */
export async function sharedOffer(client: RedisClient, prefix: string, address: string): Promise<RememberedBackend | 'malformed' | undefined> {
  return fromHash(await client.hgetall(sharedOfferKey(prefix, address)));
}
