/**
 * The operator's side of the limits: `popwarden ratelimit status|unblock|list` spawned as a real
 * process against the Redis a running popwarden filled, and the fail2ban filter in contrib/
 * proved with `fail2ban-regex` on the audit lines of a real popwarden run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { login, startProtected, startRedis, type Protected, type RedisServer } from '../harness/redis.js';
import { scratchDir } from '../harness/scratch.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'src', 'cli.ts');
const FILTER = join(ROOT, 'contrib', 'fail2ban', 'filter.d', 'popwarden.conf');
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `popwarden ratelimit ARGS` with a clean environment, bounded in time. */
function ratelimit(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'ratelimit', ...args], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

describe('popwarden ratelimit', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let backend: FakeBackend;
  let running: Protected;
  let redisFlag: string[];
  before(async () => {
    redis = await startRedis();
    backend = await startFakeBackend(legacyScript());
    running = await startProtected(backend, { redis: { kind: 'url', url: redis.url }, rateLimit: { keyPrefix: 'cli' } });
    redisFlag = ['--redis', redis.url, '--rate-limit-key-prefix', 'cli'];
  });
  after(async () => {
    await running.stop();
    await backend.stop();
    await redis.stop();
  });

  test('status, list and unblock of a blocked pair and address', async () => {
    for (let i = 1; i <= 10; i++) await login(running.proxy, '127.0.0.2', 'alice', `w${i}`);
    assert.equal(await login(running.proxy, '127.0.0.2', 'alice', 's3cret!pw'), BLOCKED);

    // Any spelling of the account finds its counters (issue 9.1).
    const blocked = await ratelimit(['status', '--user', 'Alice@example.org', '--ip', '127.0.0.2', ...redisFlag]);
    assert.equal(blocked.code, 3, blocked.stderr);
    assert.match(blocked.stdout, /user alice from 127\.0\.0\.2: BLOCKED for (59m \d+s|1h)/);
    assert.match(blocked.stdout, /user alice \(all addresses\): 10 failures, not blocked/);

    const byUser = await ratelimit(['status', '--user', 'alice', ...redisFlag]);
    assert.equal(byUser.code, 3);
    assert.match(byUser.stdout, /from 127\.0\.0\.2: BLOCKED/);

    const listed = await ratelimit(['list', ...redisFlag]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^KIND +KEY +TIME LEFT +FAILURES$/m);
    assert.match(listed.stdout, /^uip +\{alice@127\.0\.0\.2\} +(59m \d+s|1h) +10$/m);

    const unblocked = await ratelimit(['unblock', '--user', 'alice', ...redisFlag]);
    assert.equal(unblocked.code, 0, unblocked.stderr);
    assert.match(unblocked.stdout, /unblocked/);
    assert.equal(await login(running.proxy, '127.0.0.2', 'alice', 's3cret!pw'), '+OK Logged in');
    const after = await ratelimit(['status', '--user', 'alice', '--ip', '127.0.0.2', ...redisFlag]);
    assert.equal(after.code, 0);
    assert.match(after.stdout, /from 127\.0\.0\.2: no failures/);
    assert.match(after.stdout, /trusted for (29d|30d)/);
    assert.equal((await ratelimit(['list', ...redisFlag])).stdout, 'no current blocks\n');

    const nothing = await ratelimit(['unblock', '--ip', '127.0.0.99', ...redisFlag]);
    assert.equal(nothing.code, 0);
    assert.match(nothing.stdout, /nothing to unblock/);
  });

  test('usage errors exit 2; no Redis configured or unreachable exits 1', async () => {
    assert.equal((await ratelimit(['status'])).code, 2);
    assert.equal((await ratelimit(['frobnicate'])).code, 2);
    assert.equal((await ratelimit(['status', '--ip', 'not-an-ip', ...redisFlag])).code, 2);
    const none = await ratelimit(['list']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no redis configured/);
    const dead = await ratelimit(['list', '--redis', 'redis://127.0.0.1:1', '--redis-connect-timeout', '300ms']);
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /cannot reach Redis/);
  });
});

describe('fail2ban filter', { timeout: 60_000 }, () => {
  test('fail2ban-regex matches exactly the failed and blocked logins of a real run, with the client address', async () => {
    const backend = await startFakeBackend(legacyScript());
    const running = await startProtected(backend, {
      rateLimit: { userIp: { maxFailures: 3, windowMs: 3_600_000, blockMs: 3_600_000 } },
    });
    try {
      await login(running.proxy, '127.0.0.2', 'alice', 's3cret!pw');
      for (let i = 1; i <= 3; i++) await login(running.proxy, '127.0.0.3', 'alice', `w${i}`);
      assert.equal(await login(running.proxy, '127.0.0.3', 'alice', 's3cret!pw'), BLOCKED);
      // A username that tries to forge the fields the filter reads.
      await login(running.proxy, '127.0.0.4', 'x","peer":"198.51.100.1:1","result":"failure', 'nope');
      await login(running.proxy, '127.0.0.5', '"result":"failure"', 'bobpass');
    } finally {
      await running.stop();
      await backend.stop();
    }
    const audit = running.proxy.logText();
    const file = join(scratchDir('popwarden-f2b'), 'popwarden.log');
    writeFileSync(file, `${audit}\n`);
    const result = await promisify(execFile)('fail2ban-regex', ['-v', file, FILTER], { timeout: 30_000 }).catch(
      (error: unknown) => {
        throw new Error(`fail2ban-regex failed (is Debian's fail2ban installed?): ${String(error)}`);
      },
    );
    const out = result.stdout;
    const logins = audit.split('\n').filter((l) => l.includes('"event":"login"'));
    // 1 success, 3 failures, 1 blocked, 2 failures with forging usernames.
    assert.equal(logins.length, 7, audit);
    assert.match(out, /Lines: \d+ lines, 0 ignored, 6 matched/, out);
    const addresses = [...out.matchAll(/^\|\s+(\d+\.\d+\.\d+\.\d+)\s+\w{3} /gm)].map((m) => m[1]);
    assert.deepEqual(addresses.sort(), ['127.0.0.3', '127.0.0.3', '127.0.0.3', '127.0.0.3', '127.0.0.4', '127.0.0.5'], out);
  });
});
