/**
 * The 'retry-refused' mark (a refused APOP and a refused retry in clear) in Redis, as two
 * instances see it: kept per user and client address, so a guesser's address is switched to clear
 * for that user everywhere, and the user's own address nowhere (a user whose APOP secret is not
 * their system password could not log in in clear). A real redis-server.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { startRedis } from '../harness/redis.js';
import { sharedBySuite } from '../harness/suite.js';
import { ApopUsers } from '../../src/backend/apop-users.js';
import { SharedApopUsers } from '../../src/backend/shared-apop-users.js';
import { SharedRedis } from '../../src/auth/rate-limit/shared-redis.js';
import { waitUntilReady } from '../../src/auth/rate-limit/redis-client.js';
import { createLogger } from '../../src/observability/log.js';
import type { UsernameCanonical } from '../../src/config/types.js';

const ACCOUNTS: UsernameCanonical = { lowerCase: true, realmSeparators: '@%', pattern: undefined };
const BACKEND = 'mail.example:110';
const GUESSER = '198.51.100.7';
const OWNER = '192.0.2.10';

describe('APOP users shared through Redis: a refused retry marks the guessing address only', { timeout: 60_000 }, () => {
  const suite = sharedBySuite(async (keep) => {
    const redis = keep(await startRedis());
    const client = keep(new Redis(redis.url, { enableAutoPipelining: true }), (c) => c.disconnect());
    // SharedRedis answers from the process's copy alone until the client is ready.
    assert.equal(await waitUntilReady(client, 10_000), true);
    return { redis, client };
  });

  /** One instance's view: its own in-process copy, over the shared Redis. */
  const instance = (shared: SharedRedis) => new SharedApopUsers(new ApopUsers(ACCOUNTS), shared, ACCOUNTS);

  test('the mark one instance wrote holds for the guesser at the other, not for the owner; a success holds for both', async () => {
    const { redis, client } = suite();
    const shared = new SharedRedis(client, 'sar', randomBytes(32), 2_000, createLogger('error'));
    try {
      const first = instance(shared);
      const second = instance(shared);
      await first.remember(BACKEND, 'alice', 'retry-refused', GUESSER);
      assert.equal(await second.get(BACKEND, 'Alice', GUESSER), 'retry-refused');
      assert.equal(await second.get(BACKEND, 'alice', OWNER), undefined, "the owner's address: APOP first");
      const keys = (await redis.cli('--scan', '--pattern', 'sar:apopuser:*')).split('\n').filter((k) => k !== '');
      assert.equal(keys.length, 1);
      assert.match(await redis.cli('PTTL', keys[0] ?? ''), /^\d+$/);
      assert.ok(Number(await redis.cli('PTTL', keys[0] ?? '')) <= 3_600_000, 'an hour at most');

      await second.remember(BACKEND, 'alice', 'apop', OWNER);
      assert.equal(await first.get(BACKEND, 'alice', GUESSER), 'apop', 'what a success taught wins everywhere');
    } finally {
      shared.close();
    }
  });
});
