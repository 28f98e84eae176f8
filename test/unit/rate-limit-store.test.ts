/**
 * The reservation arithmetic of the in-memory store (issue 9.2): an attempt is counted before the
 * backend is asked, so at most max_failures are ever judged per window, however many run at
 * once. The Redis store does the same against a real redis-server in test/e2e.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { attemptKeys } from '../../src/auth/rate-limit/keys.js';
import { MemoryLimitStore } from '../../src/auth/rate-limit/store.js';

const HOUR = 3_600_000;
const config = {
  keyPrefix: 't',
  trustedPairMs: HOUR,
  userIp: { maxFailures: 3, windowMs: 90 * 24 * HOUR, blockMs: HOUR },
  ip: { maxFailures: 100, windowMs: 24 * HOUR, blockMs: 24 * HOUR },
  user: { maxFailures: 5, windowMs: HOUR, blockMs: HOUR / 4 },
};
const keyOptions = { usernameCanonical: { lowerCase: true, realmSeparators: '@%', pattern: undefined }, ipv6PrefixLength: 64 };
const from = (ip: string) => attemptKeys('alice', ip, keyOptions);

describe('in-memory reservations', () => {
  it('counts attempts in flight: the (max+1)th concurrent one is refused before any verdict', async () => {
    const store = new MemoryLimitStore(config);
    const keys = from('192.0.2.1');
    for (let i = 0; i < 3; i++) assert.deepEqual(await store.reserve(keys), { kind: 'reserved' });
    const refused = await store.reserve(keys);
    assert.equal(refused.kind, 'full');
    assert.equal(refused.kind === 'full' && refused.limiter, 'userIp');
  });

  it('gives back what was not judged, and a repeated wrong password', async () => {
    const store = new MemoryLimitStore(config);
    const keys = from('192.0.2.2');
    for (let i = 0; i < 3; i++) await store.reserve(keys);
    await store.release(keys);
    assert.equal(await store.fail(keys, 'tag-a'), true);
    assert.equal(await store.fail(keys, 'tag-a'), false, 'the same wrong password again is given back');
    // One kept failure, nothing in flight: two more fit.
    assert.deepEqual(await store.reserve(keys), { kind: 'reserved' });
    assert.deepEqual(await store.reserve(keys), { kind: 'reserved' });
    assert.equal((await store.reserve(keys)).kind, 'full');
  });

  it('the failure that fills a counter starts its block; a refused reservation does not extend it', async () => {
    const store = new MemoryLimitStore(config);
    const keys = from('192.0.2.3');
    for (let i = 0; i < 3; i++) {
      await store.reserve(keys);
      await store.fail(keys, `tag-${i}`);
    }
    const first = await store.reserve(keys);
    assert.ok(first.kind === 'full' && first.msLeft > HOUR - 1_000 && first.msLeft <= HOUR, JSON.stringify(first));
    const again = await store.reserve(keys);
    assert.ok(again.kind === 'full' && again.msLeft <= first.msLeft);
  });

  it('a success forgets the pair, gives back the user point and trusts the pair against the per-user limit', async () => {
    const store = new MemoryLimitStore(config);
    const home = from('192.0.2.4');
    await store.reserve(home);
    await store.succeed(home);
    // Five other addresses fill the user counter.
    for (let i = 10; i < 15; i++) {
      const keys = from(`192.0.2.${i}`);
      await store.reserve(keys);
      await store.fail(keys, 'x');
    }
    const elsewhere = await store.reserve(from('192.0.2.20'));
    assert.equal(elsewhere.kind === 'full' && elsewhere.limiter, 'user');
    assert.deepEqual(await store.reserve(home), { kind: 'reserved' }, 'the trusted pair is exempt');
  });

  it('a limiter with max_failures 0 is off: it neither counts nor refuses', async () => {
    const store = new MemoryLimitStore({ ...config, userIp: { ...config.userIp, maxFailures: 0 } });
    const keys = from('192.0.2.5');
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await store.reserve(keys), { kind: 'reserved' });
      await store.fail(keys, `t${i}`);
    }
    const refused = await store.reserve(keys);
    assert.equal(refused.kind === 'full' && refused.limiter, 'user');
  });
});

describe('in-memory store bound', () => {
  it('holds at most maxKeys counters however many spellings and addresses a spray uses', async () => {
    const store = new MemoryLimitStore(config, { maxKeys: 100 });
    for (let i = 0; i < 1_000; i++) {
      const keys = attemptKeys(`user${i}`, `198.51.100.${i % 250}`, keyOptions);
      assert.equal((await store.reserve(keys)).kind, 'reserved');
      assert.equal(await store.fail(keys, `tag-${i}`), true);
    }
    assert.ok(store.size <= 3 * 100, `${store.size} keys held`);
    assert.ok(store.evicted > 0, 'the oldest keys made room');
  });

  it('keeps the newest counters when it must evict: the latest guesses are still counted', async () => {
    const store = new MemoryLimitStore(config, { maxKeys: 50 });
    const target = from('192.0.2.99');
    for (let i = 0; i < 200; i++) await store.reserve(attemptKeys(`spray${i}`, '203.0.113.1', keyOptions));
    for (let i = 0; i < 3; i++) await store.reserve(target);
    assert.equal((await store.reserve(target)).kind, 'full');
  });
});

describe('in-memory store bound keeps blocks', () => {
  it('a spray that fills the store never evicts a blocked counter: the block holds', async () => {
    const store = new MemoryLimitStore(config, { maxKeys: 50 });
    const alice = from('192.0.2.77');
    for (let i = 0; i < 3; i++) {
      await store.reserve(alice);
      await store.fail(alice, `wrong-${i}`);
    }
    assert.equal((await store.reserve(alice)).kind, 'full', 'blocked after 3 failures');
    for (let i = 0; i < 500; i++) {
      const keys = attemptKeys(`spray${i}`, `2001:db8:${i.toString(16)}::1`, keyOptions);
      await store.reserve(keys);
      await store.fail(keys, `t${i}`);
    }
    assert.ok(store.size <= 3 * 50, `${store.size} keys held`);
    const again = await store.reserve(alice);
    assert.equal(again.kind, 'full', 'still blocked after the spray');
  });
});

describe('in-memory store full of blocks', () => {
  it('refuses a new attempt rather than forget a block, and counts nothing for it', async () => {
    const tight = { ...config, ip: { ...config.ip, maxFailures: 3 }, user: { ...config.user, maxFailures: 3 } };
    const store = new MemoryLimitStore(tight, { maxKeys: 6 });
    for (const ip of ['192.0.2.1', '192.0.2.2']) {
      const keys = attemptKeys(`victim-${ip}`, ip, keyOptions);
      for (let i = 0; i < 3; i++) {
        await store.reserve(keys);
        await store.fail(keys, `w${i}`);
      }
    }
    const newcomer = attemptKeys('newcomer', '192.0.2.3', keyOptions);
    assert.equal((await store.reserve(newcomer)).kind, 'full');
    assert.equal(store.evicted, 0);
  });
});
