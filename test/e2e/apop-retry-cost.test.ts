/**
 * What a wrong password costs at a backend that offers APOP to users without an APOP secret
 * (solid-pop3d here; qpopper and mailutils alike). popwarden retries a refused APOP in clear for
 * such users, so a wrong guess at a user it does not know yet is refused twice by the backend
 * (APOP, then USER/PASS): a backend that locks a user after N failures would lock them twice as
 * fast as popwarden's own limits count. Once both were refused for a user, on a backend where
 * logging in in clear has worked for someone, popwarden tries that user in clear only from that
 * client address (one backend failure a guess) until a login succeeds or an hour has passed; and
 * its own limiter counts each attempt once, retry or not. A real solid-pop3d, a tap on the link,
 * and the in-memory limiter with rate_limit.user_ip at 3.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLegacyServer } from '../harness/legacy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { RawClient } from '../harness/raw-client.js';
import { startProtected } from '../harness/redis.js';
import { sharedBySuite } from '../harness/suite.js';
import { commandsSent, startTap } from '../harness/tap.js';

const { alice, bob } = sampleMaildrop();
const FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';

describe('solid-pop3d: a wrong password costs the backend one failure, not two', { timeout: 120_000 }, () => {
  const chain = sharedBySuite(async (keep) => {
    const server = keep(await startLegacyServer({ server: 'solid-pop3d' }));
    const tap = keep(await startTap(server.host, server.port));
    const guarded = keep(
      await startProtected(tap, {
        rateLimit: { userIp: { maxFailures: 3, windowMs: 3_600_000, blockMs: 3_600_000 } },
        // The tap is on loopback above 1023: trusted as the chain tests do, so the retry may run.
        backendOptions: { trustLoopback: true },
      }),
    );
    return { server, tap, guarded };
  });

  /** USER/PASS from `source`; PASS's reply and the commands popwarden sent solid-pop3d for it. */
  async function attempt(source: string, password: string, user = bob.user): Promise<{ reply: string; commands: string[] }> {
    const { server, tap, guarded } = chain();
    await server.whenIdle();
    const from = tap.bytesClientToServer().length;
    const client = await RawClient.tls(guarded.proxy.host, guarded.proxy.tlsPort, guarded.proxy.caFile, source);
    try {
      await client.readLine();
      assert.match(await client.command(`USER ${user}`), /^\+OK/);
      const reply = await client.command(`PASS ${password}`, 15_000);
      return { reply, commands: commandsSent(tap, from) };
    } finally {
      client.destroy();
    }
  }

  test('three wrong guesses at a user popwarden does not know: the retry in clear runs for the first only; the limiter counts three; the right password still works', async () => {
    // alice has no APOP secret either and logs in in clear after her refused APOP: popwarden now
    // knows logging in in clear works on this backend (where it never has, nobody is switched to clear).
    const evidence = await attempt('127.0.0.20', alice.pass, alice.user);
    assert.equal(evidence.reply, '+OK Logged in');
    assert.deepEqual(evidence.commands, ['CAPA', 'APOP alice <digest>', 'CAPA', 'USER alice', 'PASS <password>']);

    const first = await attempt('127.0.0.21', 'wrong-1');
    assert.equal(first.reply, FAILED);
    assert.deepEqual(first.commands, ['CAPA', 'APOP bob <digest>', 'CAPA', 'USER bob', 'PASS <password>']);
    for (const password of ['wrong-2', 'wrong-3']) {
      const next = await attempt('127.0.0.21', password);
      assert.equal(next.reply, FAILED, password);
      assert.deepEqual(next.commands, ['CAPA', 'USER bob', 'PASS <password>'], `${password}: one backend failure`);
    }
    // rate_limit.user_ip is 3: three attempts counted once each fill it, and the fourth never reaches the backend.
    const fourth = await attempt('127.0.0.21', 'wrong-4');
    assert.equal(fourth.reply, BLOCKED);
    assert.deepEqual(fourth.commands, []);
    const audit = chain().guarded.proxy.logs().filter((l) => l['event'] === 'login' && l['user'] === bob.user);
    assert.deepEqual(audit.map((l) => l['result']), ['failure', 'failure', 'failure', 'blocked']);

    // The guesser's address only: from his own address bob is tried as anyone unknown is, APOP
    // first (a user whose APOP secret is not his system password could not log in in clear, so a
    // mark any address could set would lock him out). bob has no APOP secret: the retry logs him in.
    const owner = await attempt('127.0.0.22', bob.pass);
    assert.equal(owner.reply, '+OK Logged in');
    assert.deepEqual(owner.commands, ['CAPA', 'APOP bob <digest>', 'CAPA', 'USER bob', 'PASS <password>']);
  });
});
