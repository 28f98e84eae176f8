/**
 * What popwarden keeps per backend address in process memory is bounded: with an auth_http
 * unlisted_backend_template a route may name any address, so the addresses are not the
 * configured backends' and their number is the route service's to choose.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CapabilityCache } from '../../src/backend/capability-cache.js';
import { SharedBackendMemory } from '../../src/backend/shared-memory.js';
import { BackendMemory } from '../../src/backend/memory.js';
import { SharedRedis } from '../../src/auth/rate-limit/shared-redis.js';
import type { RedisClient } from '../../src/auth/rate-limit/redis-client.js';
import { createLogger } from '../../src/observability/log.js';
import { MAX_REMEMBERED_BACKEND_ADDRESSES } from '../../src/config/limits.js';
import { UNKNOWN_CAPABILITIES } from '../../src/pop3/capabilities.js';
import { scratchDir } from '../harness/scratch.js';

describe('per backend address, in process memory', () => {
  it('the capability cache keeps at most MAX_REMEMBERED_BACKEND_ADDRESSES: the address learnt longest ago goes', () => {
    const cache = new CapabilityCache();
    const address = (i: number): string => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}:110`;
    for (let i = 0; i <= MAX_REMEMBERED_BACKEND_ADDRESSES; i++) cache.remember(address(i), UNKNOWN_CAPABILITIES);
    assert.equal(cache.fresh(address(0)), undefined, 'the first went to make room');
    assert.equal(cache.fresh(address(1)), UNKNOWN_CAPABILITIES);
    assert.equal(cache.fresh(address(MAX_REMEMBERED_BACKEND_ADDRESSES)), UNKNOWN_CAPABILITIES);
    // Learnt again: the youngest now, so the next to go is another.
    cache.remember(address(1), UNKNOWN_CAPABILITIES);
    cache.remember('192.0.2.1:110', UNKNOWN_CAPABILITIES);
    assert.equal(cache.fresh(address(1)), UNKNOWN_CAPABILITIES);
    assert.equal(cache.fresh(address(2)), undefined);
  });

  it("the shared memory's refresh times keep at most their bound: a forgotten address is refreshed again", async () => {
    const expiries: string[] = [];
    // Redis's side is not what is tested: a client that remembers nothing and records PEXPIRE.
    const client = {
      status: 'ready',
      hgetall: () => Promise.resolve({}),
      pexpire: (key: string) => (expiries.push(key), Promise.resolve(1)),
      eval: () => Promise.resolve(1),
    } as unknown as RedisClient;
    const shared = new SharedRedis(client, 'test', Buffer.alloc(32), 1_000, createLogger('silent'));
    const memory = new SharedBackendMemory(new BackendMemory(join(scratchDir('popwarden-memory'), 'state')), shared, 2);
    const offer = { strongest: 'apop', stls: false } as const;
    const now = new Date('2026-01-01T00:00:00Z');
    for (const address of ['a:110', 'b:110', 'a:110']) await memory.observe(address, offer, now);
    assert.deepEqual(expiries, ['test:offer:a:110', 'test:offer:b:110'], 'within the hour, once per address');
    await memory.observe('c:110', offer, now);
    await memory.observe('a:110', offer, now);
    assert.deepEqual(expiries.slice(2), ['test:offer:c:110', 'test:offer:a:110'], 'a went to make room for c');
  });
});
