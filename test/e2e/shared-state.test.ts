/**
 * State that every instance must agree on lives in Redis when it is configured (issue 13.8): two
 * popwarden instances over one real redis-server, each with its own state_dir, in front of one
 * real Dovecot. What one instance learnt of the backend (what it offered, how alice logs in) the
 * other acts on, though its own file and memory know nothing of it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withDovecotBehindTap } from '../harness/dovecot.js';
import { startRedis, startProtected, login, type Protected, type RedisServer } from '../harness/redis.js';
import type { Tap } from '../harness/tap.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { Reply } from '../../src/pop3/replies.js';
import type { BackendConfig } from '../../src/config/types.js';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { scratchDir } from '../harness/scratch.js';

const { alice, bob } = sampleMaildrop();

/** Two instances sharing `redis` under `keyPrefix`, in front of `tap`; stopped after `body`. */
async function withTwoInstances(
  redis: RedisServer,
  tap: Tap,
  keyPrefix: string,
  backendOptions: Partial<BackendConfig>,
  body: (first: Protected, second: Protected) => Promise<void>,
): Promise<void> {
  const options = { redis: { kind: 'url', url: redis.url } as const, rateLimit: { keyPrefix }, backendOptions, authFailureDelayMs: 0 };
  const first = await startProtected(tap, options);
  try {
    const second = await startProtected(tap, options);
    try {
      await body(first, second);
    } finally {
      await second.stop();
    }
  } finally {
    await first.stop();
  }
}

const CLI = new URL('../../src/cli.ts', import.meta.url).pathname;

/** `popwarden backend COMMAND... --config FILE` with a config naming `address`, `redis` and `keyPrefix`; its stdout. */
async function backendCli(redis: RedisServer, keyPrefix: string, address: string, ...command: string[]): Promise<string> {
  const dir = scratchDir('popwarden-forget');
  const configFile = join(dir, 'popwarden.yaml');
  writeFileSync(configFile, `backend: ${address}\nstate_dir: ${join(dir, 'state')}\nredis:\n  url: ${redis.url}\nrate_limit:\n  key_prefix: ${keyPrefix}\n`);
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, 'backend', ...command, '--config', configFile]);
  return stdout;
}

/** What popwarden sent the backend after `from` octets, for messages. */
const sentSince = (tap: Tap, from: number): string => tap.bytesClientToServer().subarray(from).toString('latin1');

describe('state shared by instances through Redis (issue 13.8)', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });


  test('a downgrade first seen by one instance is refused by the other: no password crosses', async () => {
    await withDovecotBehindTap('cram-md5-only', async (tap, swap) => {
      // trust_loopback would let USER/PASS through to the impostor on its own: only the memory stops it.
      await withTwoInstances(redis, tap, 'downgrade', { trustLoopback: true }, async (first, second) => {
        assert.equal(await login(first.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        const key = `downgrade:offer:${tap.host}:${tap.port}`;
        assert.equal(await redis.cli('HGET', key, 'strongest'), 'cram-md5');
        assert.ok(Number(await redis.cli('PTTL', key)) > 0, 'every key under the prefix expires');
        await swap('user-only');
        const from = tap.bytesClientToServer().length;
        // The second instance has never logged in to this backend: its own file is empty.
        assert.equal(await login(second.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loginNotPossibleSafely);
        assert.doesNotMatch(sentSince(tap, from), /PASS|USER|AUTH/);
        assert.match(second.proxy.logText(), new RegExp(`refusing the downgrade[^\n]*backend forget [^\n]*--config[^\n]*${key}`), 'the refusal says how to forget, and where');
        // The operator's word: `backend forget --config` deletes the shared memory; the next login remembers the new offer.
        const address = `${tap.host}:${tap.port}`;
        const shown = JSON.parse(await backendCli(redis, 'downgrade', address, 'show')) as { redis: Record<string, { strongest: string }> };
        assert.equal(shown.redis[address]?.strongest, 'cram-md5');
        const forgot = await backendCli(redis, 'downgrade', address, 'forget', address);
        assert.match(forgot, /^forgot 127\.0\.0\.1:\d+ in Redis:/);
        assert.equal(await redis.cli('EXISTS', key), '0');
        assert.equal(await login(second.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        assert.equal(await redis.cli('HGET', key, 'strongest'), 'cleartext');
      });
    });
  });

  test('how alice logs in (APOP) is shared: the other instance does not retry her refused APOP in clear', async () => {
    // apop-only: an APOP timestamp and USER in CAPA; a refused APOP would be retried with USER/PASS on a fresh connection.
    await withDovecotBehindTap('apop-only', async (tap) => {
      await withTwoInstances(redis, tap, 'apop', { trustLoopback: true }, async (first, second) => {
        assert.equal(await login(first.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        const keys = (await redis.cli('--scan', '--pattern', 'apop:apopuser:*')).split('\n').filter((k) => k !== '');
        assert.equal(keys.length, 1);
        assert.doesNotMatch(keys[0] ?? '', /alice/, 'Redis sees an HMAC, not the username');
        assert.equal(await redis.cli('GET', keys[0] ?? ''), 'apop');
        const ttl = Number(await redis.cli('PTTL', keys[0] ?? ''));
        assert.ok(ttl > 0 && ttl <= 24 * 3_600_000, `expires within a day: ${ttl}`);

        const from = tap.bytesClientToServer().length;
        assert.match(await login(second.proxy, '127.0.0.1', alice.user, 'wrong-guess'), /^-ERR \[AUTH\]/);
        const sent = sentSince(tap, from);
        assert.match(sent, /^APOP alice /m);
        assert.doesNotMatch(sent, /USER|PASS/, 'one secret per guess: no cleartext retry');
      });
    });
  });

  test('where no login in clear has worked after a refused APOP (a Dovecot with APOP only), a refused retry switches nobody to clear', async () => {
    await withDovecotBehindTap('apop-only', async (tap) => {
      await withTwoInstances(redis, tap, 'retry', { trustLoopback: true }, async (first, second) => {
        const from = tap.bytesClientToServer().length;
        assert.match(await login(first.proxy, '127.0.0.1', bob.user, 'wrong-1'), /^-ERR \[AUTH\]/);
        assert.match(sentSince(tap, from), /^APOP bob [\s\S]*^PASS /m, 'APOP, then the retry in clear');
        assert.equal(await redis.cli('--scan', '--pattern', 'retry:apopuser:*'), '', 'nothing remembered of bob, here or for the other instance');
        // Were bob now tried in clear only, this Dovecot would refuse his own password.
        assert.equal(await login(second.proxy, '127.0.0.1', bob.user, bob.pass), Reply.loggedIn);
        assert.equal(await login(first.proxy, '127.0.0.1', bob.user, bob.pass), Reply.loggedIn);
      });
    });
  });

  test('Redis down: each instance falls back on its own copy, says so once, and shares again when Redis is back', async () => {
    await withDovecotBehindTap('cram-md5-only', async (tap) => {
      await withTwoInstances(redis, tap, 'outage', {}, async (first) => {
        assert.equal(await login(first.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        await redis.kill();
        try {
          for (let i = 0; i < 3; i++) assert.equal(await login(first.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        } finally {
          await redis.restart();
        }
        // The protection's log, where the Redis connection reports.
        const warnings = first.logs.filter((line) => line.includes('shared state (Redis) unavailable'));
        assert.equal(warnings.length, 1, 'one line per outage, not per login');
        await first.whenStore(true);
        await first.whenLogged('shared state (Redis) is back');
        assert.equal(await login(first.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
        // The restarted Redis is empty: the instance's own copy put back what it knew.
        assert.equal(await redis.cli('HGET', `outage:offer:${tap.host}:${tap.port}`, 'strongest'), 'cram-md5');
      });
    });
  });
});
