/**
 * A Redis that dies, comes back, hangs, or is a 3-node Cluster (F-01..F-03, issue 4 points 9-12).
 * Insurance: logins go on under the in-memory limiter, the store-up state says false, one warn
 * line per outage; when Redis is back it is used again without a restart. fail_closed refuses
 * with [SYS/TEMP]. A hung Redis (SIGSTOP of our own redis-server) holds no login longer than the
 * command timeout plus the failure delay.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import {
  backendLogins,
  login,
  startProtected,
  startRedis,
  startRedisCluster,
  type Protected,
  type RedisCluster,
  type RedisServer,
} from '../harness/redis.js';
import { NO_METRICS, type Metrics } from '../../src/observability/metrics.js';

const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';
const HOUR = 3_600_000;
const UNAVAILABLE = '-ERR [SYS/TEMP] Login temporarily unavailable, try again later';

function storeMetrics(): Metrics & { up: boolean[]; errors: number } {
  const state = {
    ...NO_METRICS,
    up: [] as boolean[],
    errors: 0,
    rateLimitStoreUp: (up: boolean) => void state.up.push(up),
    rateLimitStoreError: () => void (state.errors += 1),
  };
  return state;
}

const warnLines = (p: Protected) => p.logs.filter((l) => l.includes('"level":"warn"') && l.includes('rate-limit store'));

describe('Redis outages', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let backend: FakeBackend;
  before(async () => {
    redis = await startRedis();
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    await backend.stop();
    await redis.stop();
  });

  test('Redis killed: logins go on under insurance with the same limits; restarted: Redis is used again', async () => {
    const metrics = storeMetrics();
    const p = await startProtected(backend, { redis: { kind: 'url', url: redis.url }, rateLimit: { keyPrefix: 'o1' }, metrics });
    try {
      assert.deepEqual(metrics.up, [true]);
      assert.equal(await login(p.proxy, '127.0.0.2', 'alice', 'w0'), AUTH_FAILED);
      assert.equal(await redis.cli('get', 'o1:uip:{alice@127.0.0.2}'), '1');

      await redis.kill();
      const started = Date.now();
      assert.equal(await login(p.proxy, '127.0.0.2', 'bob', 'bobpass'), '+OK Logged in');
      assert.ok(Date.now() - started < 1_000, 'decided at once');
      await p.whenStore(false);
      assert.equal(metrics.up.at(-1), false);
      // The insurance applies the same numbers: 10 failures block the pair.
      for (let i = 1; i <= 10; i++) assert.equal(await login(p.proxy, '127.0.0.3', 'alice', `w${i}`), AUTH_FAILED);
      const before = backendLogins(backend);
      assert.equal(await login(p.proxy, '127.0.0.3', 'alice', 's3cret!pw'), BLOCKED);
      assert.equal(backendLogins(backend), before);
      assert.equal(warnLines(p).length, 1, 'one warn line per outage, not per login');

      await redis.restart();
      await p.whenStore(true);
      assert.equal(metrics.up.at(-1), true);
      assert.match(p.logs.join('\n'), /rate-limit store \(Redis\) is back/);
      assert.equal(await login(p.proxy, '127.0.0.4', 'alice', 'again'), AUTH_FAILED);
      assert.equal(await redis.cli('get', 'o1:uip:{alice@127.0.0.4}'), '1', 'counted in Redis again');
    } finally {
      await p.stop();
    }
  });

  test('fail_closed: Redis down means -ERR [SYS/TEMP], never [AUTH], never a backend login', async () => {
    const p = await startProtected(backend, {
      redis: { kind: 'url', url: redis.url },
      rateLimit: { keyPrefix: 'o2', onStoreFailure: 'fail_closed' },
    });
    try {
      assert.equal(await login(p.proxy, '127.0.0.5', 'bob', 'bobpass'), '+OK Logged in');
      await redis.kill();
      const before = backendLogins(backend);
      assert.equal(await login(p.proxy, '127.0.0.5', 'bob', 'bobpass'), UNAVAILABLE);
      assert.equal(await login(p.proxy, '127.0.0.5', 'bob', 'wrong'), UNAVAILABLE);
      assert.equal(backendLogins(backend), before);
      assert.match(p.proxy.logText(), /"limiter":"store_unavailable".*"result":"blocked"/);
      await redis.restart();
      await p.whenStore(true);
      assert.equal(await login(p.proxy, '127.0.0.5', 'bob', 'bobpass'), '+OK Logged in');
    } finally {
      await p.stop();
    }
  });

  test('Redis hung (SIGSTOP): no login waits longer than the command timeout plus the failure delay', async () => {
    const metrics = storeMetrics();
    const commandTimeoutMs = 300;
    const authFailureDelayMs = 200;
    const p = await startProtected(backend, {
      redis: { kind: 'url', url: redis.url },
      rateLimit: { keyPrefix: 'o3' },
      commandTimeoutMs,
      authFailureDelayMs,
      metrics,
    });
    try {
      assert.equal(await login(p.proxy, '127.0.0.6', 'alice', 's3cret!pw'), '+OK Logged in');
      redis.hang();
      const durations: number[] = [];
      for (const [user, password, expected] of [
        ['alice', 'wrong', AUTH_FAILED],
        ['alice', 's3cret!pw', '+OK Logged in'],
        ['bob', 'nope', AUTH_FAILED],
      ] as const) {
        const started = Date.now();
        assert.equal(await login(p.proxy, '127.0.0.6', user, password), expected);
        durations.push(Date.now() - started);
      }
      // Each login includes its own TLS handshake (~20 ms here); the budget is timeout + delay.
      const budget = commandTimeoutMs + 50 + authFailureDelayMs + 250;
      for (const ms of durations) assert.ok(ms < budget, `a login took ${ms} ms (budget ${budget}): ${durations.join(', ')}`);
      assert.equal(p.protection.storeUp(), false);
      assert.ok(metrics.errors >= 1);
      redis.resume();
      await p.whenStore(true);
      assert.equal(await login(p.proxy, '127.0.0.7', 'bob', 'nope'), AUTH_FAILED);
      assert.equal(await redis.cli('get', 'o3:uip:{bob@127.0.0.7}'), '1');
    } finally {
      redis.resume();
      await p.stop();
    }
  });

  test('Redis down at startup: popwarden starts under insurance and picks Redis up when it appears', async () => {
    await redis.kill();
    const p = await startProtected(backend, { redis: { kind: 'url', url: redis.url }, rateLimit: { keyPrefix: 'o4' } });
    try {
      assert.equal(p.protection.storeUp(), false);
      assert.equal(await login(p.proxy, '127.0.0.8', 'bob', 'bobpass'), '+OK Logged in');
      await redis.restart();
      await p.whenStore(true);
      assert.equal(await login(p.proxy, '127.0.0.8', 'bob', 'x'), AUTH_FAILED);
      assert.equal(await redis.cli('get', 'o4:uip:{bob@127.0.0.8}'), '1');
    } finally {
      await p.stop();
    }
  });

  /**
   * A limit shortened in the config (or an instance of a fleet that runs with a shorter one) meets
   * the counters Redis already holds, which keep the TTL their window gave them when they were
   * made: a counter that outlives today's window is the old policy's, not a corrupted reply. The
   * store must go on deciding from Redis; were it read as corruption, every login from an address
   * with an old counter would drop the Redis connection and mark the store down (with
   * on_store_failure: fail_closed, refuse every login), and an attacker who owns such a counter
   * could keep it so with one login a second.
   */
  test('rate_limit.ip shortened from a day to an hour: an address with a day-long counter is still decided by Redis', async () => {
    const redisTarget = { kind: 'url' as const, url: redis.url };
    const longer = await startProtected(backend, { redis: redisTarget, rateLimit: { keyPrefix: 'pc', ip: { maxFailures: 100, windowMs: 24 * HOUR, blockMs: 24 * HOUR } } });
    try {
      assert.equal(await login(longer.proxy, '127.0.0.3', 'alice', 'wrong'), '-ERR [AUTH] Authentication failed');
    } finally {
      await longer.stop();
    }
    const ttls = await Promise.all((await redis.cli('--scan', '--pattern', 'pc:*')).split('\n').map((key) => redis.cli('PTTL', key)));
    assert.ok(ttls.some((ttl) => Number(ttl) > HOUR), `a counter lives longer than the new window: ${ttls.join(', ')}`);

    const metrics = storeMetrics();
    const shorter = await startProtected(backend, { redis: redisTarget, rateLimit: { keyPrefix: 'pc', ip: { maxFailures: 100, windowMs: HOUR, blockMs: HOUR } }, metrics });
    try {
      assert.equal(await login(shorter.proxy, '127.0.0.3', 'bob', 'bobpass'), '+OK Logged in');
      assert.equal(await login(shorter.proxy, '127.0.0.3', 'alice', 'wrong'), '-ERR [AUTH] Authentication failed');
      assert.deepEqual(metrics.up, [true], 'the store was never marked down');
      assert.equal(metrics.errors, 0);
      assert.deepEqual(shorter.logs.filter((l) => l.includes('"level":"warn"')), []);
    } finally {
      await shorter.stop();
    }
  });
});

// The same hooks as the outages' above with a cluster in place of one server: each describe owns
// the servers its tests share (like the legacy servers' describes in legacy-backends.test.ts).
describe('Redis Cluster (3 masters)', { timeout: 120_000 }, () => {
  let cluster: RedisCluster;
  let backend: FakeBackend;
  before(async () => {
    cluster = await startRedisCluster();
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    await backend.stop();
    await cluster.stop();
  });

  test('the limits work across slots on different nodes, and two instances share them', async () => {
    const redis = { kind: 'cluster' as const, nodes: cluster.nodes.slice(0, 1).map((n) => ({ host: n.host, port: n.port })) };
    const a = await startProtected(backend, { redis, rateLimit: { keyPrefix: 'c1' } });
    const b = await startProtected(backend, { redis, rateLimit: { keyPrefix: 'c1' } });
    try {
      assert.equal(a.protection.storeUp(), true);
      for (let i = 1; i <= 5; i++) assert.equal(await login(a.proxy, '127.0.0.2', 'alice', `a${i}`), AUTH_FAILED);
      for (let i = 1; i <= 5; i++) assert.equal(await login(b.proxy, '127.0.0.2', 'alice', `b${i}`), AUTH_FAILED);
      assert.equal(await login(a.proxy, '127.0.0.2', 'alice', 's3cret!pw'), BLOCKED);
      assert.equal(await login(a.proxy, '127.0.0.3', 'alice', 's3cret!pw'), '+OK Logged in');
      const holders = await Promise.all(
        cluster.nodes.map(async (n) => (await n.cli('--scan', '--pattern', 'c1:*')).split('\n').filter(Boolean)),
      );
      assert.ok(holders.filter((keys) => keys.length > 0).length >= 2, `keys spread over nodes: ${JSON.stringify(holders)}`);
      assert.ok(!a.logs.some((l) => l.includes('rate-limit store (Redis) unavailable')), 'no store error in cluster mode');
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
