/** describeRedisTarget: what the startup log says about the Redis store, never a password. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { describeRedisTarget } from '../../src/auth/rate-limit/redis-client.js';
import type { RedisConfig } from '../../src/config/types.js';

const withUrl = (url: string): RedisConfig => ({
  target: { kind: 'url', url },
  username: undefined,
  passwordFile: undefined,
  tls: false,
  commandTimeoutMs: 500,
  connectTimeoutMs: 2_000,
});

describe('describeRedisTarget', () => {
  it('masks a URL password that contains @ whole, up to the last @ as the URL parser reads it', () => {
    // What ioredis connects with: the WHATWG parser takes everything before the last @ as userinfo.
    const parsed = new URL('redis://:pass@dor@127.0.0.1:6390');
    assert.equal(decodeURIComponent(parsed.password), 'pass@dor');
    assert.equal(describeRedisTarget(withUrl('redis://:pass@dor@127.0.0.1:6390')), 'redis://:********@127.0.0.1:6390');
    assert.equal(describeRedisTarget(withUrl('rediss://app:a@b:c@redis.example:6380/1')), 'rediss://app:********@redis.example:6380/1');
  });

  it('shows a URL without credentials as it is', () => {
    assert.equal(describeRedisTarget(withUrl('redis://127.0.0.1:6379/2')), 'redis://127.0.0.1:6379/2');
  });
});
