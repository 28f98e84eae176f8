/**
 * A failed login waiting for its auth_failure_delay when popwarden stops (SIGTERM) is still
 * settled in the limiter before the store closes: a rolling restart under a credential-stuffing
 * attack must not forgive the failures in flight. A real popwarden process, a real Dovecot, a
 * real redis-server. With user_ip at one failure per 1-minute window and a 1-hour block, the
 * reservation alone (made before the backend was asked) leaves the counter full for what is left
 * of its minute; only the settled failure starts the block and records the wrong password's
 * fingerprint. So the counter's TTL in Redis tells whether the failure was settled.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { RawClient } from '../harness/raw-client.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

const PREFIX = 'settle';
const WINDOW_MS = 60_000;
const AUTH_FAILED = '-ERR [AUTH] Authentication failed';

describe('a failed login in its failure delay at SIGTERM', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  let redis: RedisServer;
  const started: PopwardenProcess[] = [];

  before(async () => {
    [dovecot, redis] = await Promise.all([startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' }), startRedis()]);
  });
  after(async () => {
    await stopAll(started, redis, dovecot);
  });

  /** popwarden over `redis` with the delay and drain given; resolves once it uses Redis. */
  async function popwarden(authFailureDelay: string, shutdown: string): Promise<PopwardenProcess> {
    const pw = await spawnPopwarden({
      backend: `${dovecot.host}:${dovecot.port}`,
      auth_failure_delay: authFailureDelay,
      timeouts: { shutdown },
      redis: { url: redis.url, command_timeout: '1s', connect_timeout: '2s' },
      rate_limit: { key_prefix: PREFIX, user_ip: { max_failures: 1, window: `${WINDOW_MS / 1000}s`, block: '1h' } },
      limits: { max_new_connections_per_ip: 0, max_new_connections_per_ip_per_minute: 0 },
    });
    started.push(pw);
    await pw.waitForLog((e) => String(e['msg']).startsWith('rate limiting in Redis'));
    return pw;
  }

  /** Sends a wrong password from `source`; resolves once popwarden has logged the failure (its answer now waits for the deadline). */
  async function wrongPasswordInFlight(pw: PopwardenProcess, source: string): Promise<{ client: RawClient; reply: Promise<string> }> {
    const client = await RawClient.tls(pw.host, pw.tlsPort, pw.caFile, source);
    assert.match(await client.readLine(), /^\+OK/);
    assert.match(await client.command('USER alice'), /^\+OK/);
    const reply = client.command('PASS not-her-password', 60_000).catch((error: unknown) => `no reply: ${String(error)}`);
    await pw.waitForLog((e) => e['event'] === 'login' && e['result'] === 'failure');
    return { client, reply };
  }

  /** The failure is kept in Redis: the counter lives for the block, and the wrong password's fingerprint is recorded. */
  async function assertSettled(source: string): Promise<void> {
    const pair = `{alice@${source}}`;
    const ttl = Number(await redis.cli('PTTL', `${PREFIX}:uip:${pair}`));
    assert.ok(ttl > WINDOW_MS, `the counter expires in ${ttl} ms: the 1h block was not started, the failure was not settled`);
    assert.equal(await redis.cli('GET', `${PREFIX}:uip:${pair}`), '1');
    assert.equal(await redis.cli('EXISTS', `${PREFIX}:seen:${pair}`), '1', 'the wrong password was not fingerprinted');
  }

  // A delay far longer than the test: a shutdown that waited for the deadline would time out.
  for (const { what, shutdown, source } of [
    { what: 'no drain (timeouts.shutdown 0s)', shutdown: '0s', source: '127.0.0.2' },
    { what: 'a drain shorter than the delay', shutdown: '1s', source: '127.0.0.3' },
  ]) {
    test(`${what}: the failure is settled before the store closes, the session is closed unanswered, and popwarden exits without waiting for the deadline`, async () => {
      const pw = await popwarden('10m', shutdown);
      const { client, reply } = await wrongPasswordInFlight(pw, source);
      await pw.stop();
      assert.match(await reply, /^no reply: .*closed before/);
      client.destroy();
      assert.ok(pw.logs().some((e) => e['msg'] === 'stopped'), 'popwarden stopped in order');
      await assertSettled(source);
    });
  }

  test('a drain longer than the delay: the client gets its -ERR at the deadline, and the failure is settled', async () => {
    const source = '127.0.0.4';
    const pw = await popwarden('1s', '20s');
    const { client, reply } = await wrongPasswordInFlight(pw, source);
    const stopped = pw.stop();
    assert.equal(await reply, AUTH_FAILED);
    await stopped;
    client.destroy();
    await assertSettled(source);
  });
});
