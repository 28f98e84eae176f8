/**
 * Failed-login protection through the real listeners, with the guard and gate that
 * createProtection builds, against a real redis-server (A-01..A-04, issue 4 points 1-8).
 * Clients bind distinct loopback sources (127.0.0.x) to stand for distinct addresses.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { RawClient } from '../harness/raw-client.js';
import { backendLogins, login, startProtected, startRedis, type Protected, type RedisServer } from '../harness/redis.js';

const AUTH_FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';

describe('rate limiting in Redis', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let backend: FakeBackend;
  const running: Protected[] = [];
  const start = async (prefix: string, options: Parameters<typeof startProtected>[1] = {}) => {
    const started = await startProtected(backend, {
      redis: { kind: 'url', url: redis.url },
      ...options,
      rateLimit: { keyPrefix: prefix, ...options.rateLimit },
    });
    running.push(started);
    return started;
  };

  before(async () => {
    redis = await startRedis();
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    for (const p of running) await p.stop();
    await backend.stop();
    await redis.stop();
  });

  test('the 11th attempt of one user from one address is blocked, even with the right password, and never reaches the backend', async () => {
    const { proxy } = await start('t1');
    for (let i = 1; i <= 10; i++) assert.equal(await login(proxy, '127.0.0.2', 'alice', `wrong-${i}`), AUTH_FAILED, `failure ${i}`);
    const before = backendLogins(backend);
    assert.equal(await login(proxy, '127.0.0.2', 'alice', 's3cret!pw'), BLOCKED);
    assert.equal(await login(proxy, '127.0.0.2', 'Alice ', 's3cret!pw'), BLOCKED, 'the username is normalised before keying');
    assert.equal(backendLogins(backend), before, 'no blocked attempt reached the backend');
    // Another address is not affected by this pair's block.
    assert.equal(await login(proxy, '127.0.0.3', 'alice', 's3cret!pw'), '+OK Logged in');
    assert.match(proxy.logText(), /"limiter":"user_ip".*"result":"blocked"/);
    // The block lives in Redis, with a TTL of about an hour; every key has a TTL.
    const keys = (await redis.cli('--scan', '--pattern', 't1:*')).split('\n').filter(Boolean);
    assert.ok(keys.includes('t1:uip:{alice@127.0.0.2}'), keys.join(' '));
    const blockTtl = Number(await redis.cli('pttl', 't1:uip:{alice@127.0.0.2}'));
    assert.ok(blockTtl > 3_590_000 && blockTtl <= 3_600_000, String(blockTtl));
    for (const key of keys) assert.ok(Number(await redis.cli('pttl', key)) > 0, `${key} has no TTL`);
  });

  test('a success resets the pair and makes it trusted', async () => {
    const { proxy, protection } = await start('t2');
    for (let i = 1; i <= 5; i++) await login(proxy, '127.0.0.4', 'alice', `wrong-${i}`);
    assert.equal(await redis.cli('get', 't2:uip:{alice@127.0.0.4}'), '5');
    assert.equal(await login(proxy, '127.0.0.4', 'alice', 's3cret!pw'), '+OK Logged in');
    await protection.guard.settled(); // the session settles a success off the reply's path
    assert.equal(await redis.cli('exists', 't2:uip:{alice@127.0.0.4}'), '0');
    const trustedTtl = Number(await redis.cli('pttl', 't2:trusted:{alice@127.0.0.4}'));
    assert.ok(trustedTtl > 29 * 86_400_000, String(trustedTtl));
    for (let i = 1; i <= 10; i++) await login(proxy, '127.0.0.4', 'alice', `again-${i}`);
    assert.equal(await login(proxy, '127.0.0.4', 'alice', 's3cret!pw'), BLOCKED, 'ten new failures after the reset block again');
  });

  test('a device repeating one stale password is not blocked by its own repeats; only a keyed fingerprint is stored', async () => {
    const { proxy } = await start('t3');
    for (let i = 1; i <= 15; i++) assert.equal(await login(proxy, '127.0.0.5', 'bob', 'old-password'), AUTH_FAILED, `try ${i}`);
    assert.equal(await redis.cli('get', 't3:uip:{bob@127.0.0.5}'), '1');
    const seen = (await redis.cli('smembers', 't3:seen:{bob@127.0.0.5}')).split('\n');
    assert.equal(seen.length, 1);
    assert.match(seen[0] ?? '', /^[0-9a-f]{16}$/);
    const dump = await redis.cli('--scan', '--pattern', 't3:*');
    assert.ok(!dump.includes('old-password'));
    assert.equal(await login(proxy, '127.0.0.5', 'bob', 'bobpass'), '+OK Logged in');
  });

  test('one address spraying many users is blocked for all of them (ip limiter)', async () => {
    const { proxy } = await start('t4', { rateLimit: { ip: { maxFailures: 5, windowMs: 86_400_000, blockMs: 86_400_000 } } });
    for (let i = 1; i <= 5; i++) assert.equal(await login(proxy, '127.0.0.6', `user${i}`, 'Password1'), AUTH_FAILED);
    assert.equal(await login(proxy, '127.0.0.6', 'bob', 'bobpass'), BLOCKED);
    assert.match(proxy.logText(), /"limiter":"ip".*"result":"blocked"/);
    assert.equal(await login(proxy, '127.0.0.7', 'bob', 'bobpass'), '+OK Logged in', 'another address is unaffected (A-02)');
  });

  test('many addresses guessing one user block it, except where it logged in before (trusted pair, A-03)', async () => {
    const { proxy, protection } = await start('t5', { rateLimit: { user: { maxFailures: 5, windowMs: 3_600_000, blockMs: 900_000 } } });
    assert.equal(await login(proxy, '127.0.0.10', 'alice', 's3cret!pw'), '+OK Logged in');
    await protection.guard.settled();
    for (let i = 11; i <= 15; i++) assert.equal(await login(proxy, `127.0.0.${i}`, 'alice', `guess-${i}`), AUTH_FAILED);
    const before = backendLogins(backend);
    assert.equal(await login(proxy, '127.0.0.16', 'alice', 's3cret!pw'), BLOCKED);
    assert.equal(backendLogins(backend), before);
    assert.match(proxy.logText(), /"limiter":"user".*"result":"blocked"/);
    assert.equal(await login(proxy, '127.0.0.10', 'alice', 's3cret!pw'), '+OK Logged in', 'the real user still logs in from its trusted address');
  });

  test('two popwarden instances on one Redis share the counts', async () => {
    const a = await start('t6');
    const b = await start('t6');
    for (let i = 1; i <= 5; i++) await login(a.proxy, '127.0.0.20', 'alice', `a-${i}`);
    for (let i = 1; i <= 5; i++) await login(b.proxy, '127.0.0.20', 'alice', `b-${i}`);
    assert.equal(await login(a.proxy, '127.0.0.20', 'alice', 's3cret!pw'), BLOCKED);
    assert.equal(await login(b.proxy, '127.0.0.20', 'alice', 's3cret!pw'), BLOCKED);
  });

  test('trusted_for 0s trusts no address, and a limiter with max_failures 0 counts nothing (issue 9.5)', async () => {
    const { proxy, protection } = await start('t8', {
      rateLimit: {
        trustedPairMs: 0,
        userIp: { maxFailures: 0, windowMs: 3_600_000, blockMs: 3_600_000 },
        user: { maxFailures: 3, windowMs: 3_600_000, blockMs: 900_000 },
      },
    });
    assert.equal(await login(proxy, '127.0.0.50', 'alice', 's3cret!pw'), '+OK Logged in');
    await protection.guard.settled();
    assert.equal(protection.storeUp(), true, 'the success did not break the store');
    for (let i = 51; i <= 53; i++) assert.equal(await login(proxy, `127.0.0.${i}`, 'alice', `guess-${i}`), AUTH_FAILED);
    assert.equal(await login(proxy, '127.0.0.50', 'alice', 's3cret!pw'), BLOCKED, 'no address is exempt from the per-user limit');
    assert.equal(await redis.cli('--scan', '--pattern', 't8:uip:*'), '');
    assert.equal(await redis.cli('--scan', '--pattern', 't8:trusted:*'), '');
  });

  test('an allowed address is never limited; a denied one is refused at connect', async () => {
    const { proxy } = await start('t7', {
      rateLimit: { allow: ['127.0.0.30/31'], deny: ['127.0.0.66'], userIp: { maxFailures: 2, windowMs: 3_600_000, blockMs: 3_600_000 } },
    });
    for (let i = 1; i <= 5; i++) assert.equal(await login(proxy, '127.0.0.31', 'alice', `w-${i}`), AUTH_FAILED);
    assert.equal(await login(proxy, '127.0.0.31', 'alice', 's3cret!pw'), '+OK Logged in');
    // No counter, block or trusted mark; what the backend offered and how alice logged in are no limit.
    const keys = (await redis.cli('--scan', '--pattern', 't7:*')).split('\n').filter((key) => key !== '');
    assert.deepEqual(keys.filter((key) => !/^t7:(offer|apopuser):/.test(key)), []);
    const denied = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.66');
    assert.equal(await denied.readLine(), '-ERR [SYS/PERM] Connections from your address are not accepted');
    assert.equal(await denied.closedWithin(2_000), true);
    // On the TLS port, where the client waits for a ServerHello, a bare close.
    const deniedTls = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.66');
    assert.equal(await deniedTls.closedWithin(2_000), true);
    assert.equal(deniedTls.all().length, 0);
  });
});

describe('connection bounds per address', { timeout: 30_000 }, () => {
  let backend: FakeBackend;
  before(async () => {
    backend = await startFakeBackend(legacyScript());
  });
  after(async () => {
    await backend.stop();
  });

  test('concurrent sessions and new connections per second are bounded before any TLS work', async () => {
    const { proxy, stop, nextRelease } = await startProtected(backend, { limits: { maxSessionsPerIp: 2, maxNewConnectionsPerIp: 100 } });
    const clients: RawClient[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.40');
        clients.push(c);
        assert.match(await c.readLine(), /^\+OK/);
      }
      const third = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.40');
      clients.push(third);
      assert.equal(await third.readLine(), '-ERR [SYS/TEMP] Too many connections from your address, try again later');
      assert.equal(await third.closedWithin(2_000), true);
      // The TLS port shares the bound and closes without a byte: its client waits for a
      // ServerHello, and a POP3 line would only be a TLS error (issue 14.3: the cheapest refusal).
      const onTlsPort = await RawClient.plain(proxy.host, proxy.tlsPort, '127.0.0.40');
      clients.push(onTlsPort);
      assert.equal(await onTlsPort.closedWithin(2_000), true);
      assert.equal(onTlsPort.all().length, 0, onTlsPort.all().toString('latin1'));
      const other = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.41');
      clients.push(other);
      assert.match(await other.readLine(), /^\+OK/, 'another address is unaffected');
      const released = nextRelease();
      clients[0]?.destroy();
      await released;
      const again = await RawClient.plain(proxy.host, proxy.stlsPort, '127.0.0.40');
      clients.push(again);
      assert.match(await again.readLine(), /^\+OK/, 'a closed session frees its place');
    } finally {
      for (const c of clients) c.destroy();
      await stop();
    }

    const burst = await startProtected(backend, { limits: { maxSessionsPerIp: 100, maxNewConnectionsPerIp: 3 } });
    const opened: RawClient[] = [];
    try {
      const replies: string[] = [];
      for (let i = 0; i < 5; i++) {
        const c = await RawClient.plain(burst.proxy.host, burst.proxy.stlsPort, '127.0.0.42');
        opened.push(c);
        replies.push(await c.readLine());
      }
      const refused = replies.filter((r) => r.startsWith('-ERR [SYS/TEMP]')).length;
      assert.ok(refused >= 1 && refused <= 2, replies.join(' | '));
    } finally {
      for (const c of opened) c.destroy();
      await burst.stop();
    }
  });
});
