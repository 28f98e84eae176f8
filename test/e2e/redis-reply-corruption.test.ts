/**
 * A corrupted byte in Redis's answer to the limiter is never taken as a decision. RESP has no
 * checksum, so a changed byte often still parses: `:3` becomes `:*` (read as -6 points), `*2`
 * becomes `**` or an array that never ends. With the user+address counter of a pair full (the
 * pair is blocked), every byte of the replies to one reserve() round trip is corrupted in turn, on
 * a real redis-server through the fault proxy, with the production client settings: each time,
 * reserve() must still say "full" or fail (a store failure, which insurance.ts turns into the
 * in-process limiter's verdict and an outage line). "reserved" would be a guess let through a
 * block. Both a one-digit count (3) and the default's two digits (10): in `:11` a `*` for the
 * second digit is read as 1*10-6 = 4, a count that looks fine, so the count is checked against
 * a second copy of it that the increment script sends in another form.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { attemptKeys } from '../../src/auth/rate-limit/keys.js';
import { createRedisClient } from '../../src/auth/rate-limit/redis-client.js';
import { ADD_FINGERPRINT, RedisLimitStore, TRUSTED_WITH_COPY } from '../../src/auth/rate-limit/store.js';
import { onRedisScript, startFaultProxy, type FaultProxy } from '../harness/fault-proxy.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

const HOUR = 3_600_000;
/** Only the user+address counter can bind: the per-address and per-user ones stay far from full. */
const policies = (maxFailures: number) => ({
  keyPrefix: `corruption${maxFailures}`,
  userIp: { maxFailures, windowMs: HOUR, blockMs: HOUR },
  ip: { maxFailures: 100_000, windowMs: HOUR, blockMs: HOUR },
  user: { maxFailures: 100_000, windowMs: HOUR, blockMs: HOUR },
  trustedPairMs: HOUR,
});
const KEYS = attemptKeys('alice', '192.0.2.7', { usernameCanonical: { lowerCase: true, realmSeparators: '@%', pattern: undefined }, ipv6PrefixLength: 64 });
/**
 * The trusted mark (`*2\r\n:0\r\n$1\r\n0\r\n`, 15 bytes) and three consumes
 * (`*2\r\n:N\r\n$L\r\nTTL:N\r\n`, about 30 bytes each) are about 105 bytes; past them the
 * corruption lands on the give-back replies that follow a refusal.
 */
const OFFSETS = 120;

async function connected(url: string): Promise<Redis> {
  const client = createRedisClient({
    target: { kind: 'url', url },
    username: undefined,
    passwordFile: undefined,
    tls: false,
    commandTimeoutMs: 250,
    connectTimeoutMs: 2_000,
  }) as Redis;
  client.on('error', () => undefined); // a corrupted reply may break the connection: that is the point
  if (client.status !== 'ready') await new Promise<void>((resolve) => client.once('ready', () => resolve()));
  return client;
}

/**
 * Each sweep: a counter filled to its block without faults, then one reserve per byte offset on a
 * fresh connection (the fault hits the reply to that reserve, not a ping's), that byte corrupted.
 * The first two block the pair (a count of one digit and the default's two); the third flips the
 * low bit instead of writing `*`, with only the per-user counter full and the pair not trusted
 * (no success from this address): the trusted mark's `:0` would read `:1`, "trusted", and skip
 * the per-user limit, and a count's digit would read as another count.
 */
const SWEEPS = [
  ...[3, 10].map((maxFailures) => ({
    name: `a corrupted byte in the replies to a reserve (a blocked count of ${maxFailures})`,
    policies: policies(maxFailures),
    failures: maxFailures,
    blockedBy: 'userIp',
    fault: { kind: 'corrupt' as const },
  })),
  {
    name: 'a bit flipped in the replies to a reserve, the per-user counter full',
    policies: { ...policies(1_000), user: { maxFailures: 2, windowMs: HOUR, blockMs: HOUR } },
    failures: 2,
    blockedBy: 'user',
    fault: { kind: 'corrupt' as const, flipBits: 0x01 },
  },
];

for (const sweep of SWEEPS) describe(sweep.name, { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let proxy: FaultProxy;

  before(async () => {
    redis = await startRedis();
    proxy = await startFaultProxy({ host: redis.host, port: redis.port });
    // Fill the counter with judged failures, uncorrupted.
    const client = await connected(redis.url);
    const store = new RedisLimitStore(client, sweep.policies);
    for (let i = 0; i < sweep.failures; i++) {
      assert.deepEqual(await store.reserve(KEYS), { kind: 'reserved' });
      assert.equal(await store.fail(KEYS, undefined), true);
    }
    const blocked = await store.reserve(KEYS);
    assert.equal(blocked.kind, 'full');
    client.disconnect();
  });

  after(async () => {
    await proxy.stop();
    await redis.stop();
  });

  test('at every byte offset, the block holds or the store fails; never "reserved"', async () => {
    const outcomes = { full: 0, failed: 0 };
    for (let offset = 0; offset < OFFSETS; offset++) {
      proxy.armAll({ ...sweep.fault, afterBytes: offset, trigger: onRedisScript(TRUSTED_WITH_COPY) });
      const client = await connected(`redis://${proxy.host}:${proxy.port}`);
      try {
        const store = new RedisLimitStore(client, sweep.policies);
        const outcome = await store.reserve(KEYS).then(
          (reservation) => reservation,
          () => 'failed' as const,
        );
        if (outcome === 'failed') {
          outcomes.failed++;
        } else {
          assert.equal(outcome.kind, 'full', `byte ${offset} corrupted: ${JSON.stringify(outcome)}`);
          if (outcome.kind === 'full') {
            assert.equal(outcome.limiter, sweep.blockedBy, `byte ${offset} corrupted`);
            assert.ok(outcome.msLeft >= 0 && outcome.msLeft <= HOUR, `byte ${offset} corrupted: ${outcome.msLeft} ms left`);
          }
          outcomes.full++;
        }
      } finally {
        proxy.clear();
        client.disconnect();
      }
    }
    // Both kinds occur: the sweep reached the counts and the replies after them.
    assert.ok(outcomes.failed > 0 && outcomes.full > 0, JSON.stringify(outcomes));
  });
});

describe('a bit flipped in the reply that says whether a wrong password was seen before', { timeout: 120_000 }, () => {
  // fail() with a fingerprint adds it to the pair's set: "added" (1) keeps the failure counted,
  // "already there" (0) gives its place back (a repeat is not counted twice). A 1 read as 0 would
  // un-count a guess.
  const POLICIES = policies(1_000);
  const FLIP_OFFSETS = 40;
  let redis: RedisServer;
  let proxy: FaultProxy;

  before(async () => {
    redis = await startRedis();
    proxy = await startFaultProxy({ host: redis.host, port: redis.port });
  });

  after(async () => {
    await proxy.stop();
    await redis.stop();
  });

  test('at every byte offset, the low bit flipped: a new wrong password stays counted, or the store fails', async () => {
    let counted = 0;
    for (let offset = 0; offset < FLIP_OFFSETS; offset++) {
      // A pair of its own each time, reserved on a clean connection: one attempt in its counter.
      const keys = attemptKeys(`user${offset}`, '192.0.2.7', { usernameCanonical: { lowerCase: true, realmSeparators: '@%', pattern: undefined }, ipv6PrefixLength: 64 });
      const direct = await connected(redis.url);
      const clean = new RedisLimitStore(direct, POLICIES);
      assert.deepEqual(await clean.reserve(keys), { kind: 'reserved' });
      const counterKey = `${POLICIES.keyPrefix}:uip:${keys.pair}`;
      proxy.armAll({ kind: 'corrupt', afterBytes: offset, flipBits: 0x01, trigger: onRedisScript(ADD_FINGERPRINT) });
      const client = await connected(`redis://${proxy.host}:${proxy.port}`);
      try {
        const kept = await new RedisLimitStore(client, POLICIES).fail(keys, `fingerprint-${offset}`).then(
          (result) => result,
          () => 'failed' as const,
        );
        assert.notEqual(kept, false, `bit 0 of byte ${offset} flipped: the new wrong password was taken for a repeat`);
        assert.equal(await direct.get(counterKey), '1', `bit 0 of byte ${offset} flipped: the attempt is still counted`);
        if (kept === true) counted++;
      } finally {
        proxy.clear();
        client.disconnect();
        direct.disconnect();
      }
    }
    assert.ok(counted > 0, 'the sweep also reached bytes past the answer');
  });
});
