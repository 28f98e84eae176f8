/**
 * What one login asks of Redis (issue 10 point 3b: the CPU a login costs): every command is work
 * for popwarden's Redis client, so a login sends only what can change its outcome. Counted with
 * `redis-cli MONITOR` on a real redis-server, for logins through popwarden to a real Dovecot that
 * offers CRAM-MD5 and an APOP timestamp (the bench's backend). No timing here: bench/ measures.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDovecot } from '../harness/dovecot.js';
import { login, monitorRedis, startProtected, startRedis, type MonitoredCommand } from '../harness/redis.js';
import { sharedBySuite } from '../harness/suite.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { Reply } from '../../src/pop3/replies.js';

const { alice } = sampleMaildrop();
const PREFIX = 'perlogin';

describe('what one login asks of Redis', { timeout: 60_000 }, () => {
  const suite = sharedBySuite(async (keep) => {
    const redis = keep(await startRedis());
    const dovecot = keep(await startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' }));
    const popwarden = keep(await startProtected(dovecot, { redis: { kind: 'url', url: redis.url }, rateLimit: { keyPrefix: PREFIX }, authFailureDelayMs: 0 }));
    const monitor = keep(await monitorRedis(redis));
    // The first login writes what the backend offered; the ones measured find it there.
    assert.equal(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
    await popwarden.protection.guard.settled();
    return { redis, dovecot, popwarden, monitor };
  });

  /** The commands popwarden sent Redis for one successful login of alice, its settlement included. */
  async function oneLogin(): Promise<MonitoredCommand[]> {
    const { popwarden, monitor } = suite();
    await monitor.take();
    assert.equal(await login(popwarden.proxy, '127.0.0.1', alice.user, alice.pass), Reply.loggedIn);
    await popwarden.protection.guard.settled();
    return monitor.take({ fromClients: true });
  }

  const touching = (commands: readonly MonitoredCommand[], kind: string): string[] =>
    commands.filter((c) => c.args.some((arg) => arg.startsWith(`${PREFIX}:${kind}:`))).map((c) => c.name);

  test('behind a backend offering CRAM-MD5, how users log in to APOP is neither read nor written', async () => {
    // With CRAM-MD5 offered, APOP is never the choice, so what alice did with APOP cannot matter.
    const commands = await oneLogin();
    assert.deepEqual(touching(commands, 'apopuser'), []);
    assert.equal(await suite().redis.cli('--scan', '--pattern', `${PREFIX}:apopuser:*`), '');
  });

  test("the backend's remembered offer costs one HGETALL per login, no MULTI, its expiry pushed back at most hourly", async () => {
    const commands = await oneLogin();
    assert.deepEqual(touching(commands, 'offer'), ['hgetall']);
    const { redis, dovecot } = suite();
    assert.ok(Number(await redis.cli('PTTL', `${PREFIX}:offer:${dovecot.host}:${dovecot.port}`)) > 0, 'the key still expires');
  });
});
