/**
 * Crash safety of the process (issue 14.5): popwarden is killed with SIGKILL in the middle of a
 * session and started again. A RETR cut by the kill never looks complete, messages marked with
 * DELE are not deleted (the client never said QUIT), and the failed-login counts in Redis, a
 * guess in flight at the kill included, still hold after the restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { afterCommand, onCommand, startFaultProxy, type FaultProxy } from '../harness/fault-proxy.js';
import { sampleMaildrop } from '../harness/maildrop.js';
import { spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { RawClient } from '../harness/raw-client.js';
import { startRedis, type RedisServer } from '../harness/redis.js';

const { alice } = sampleMaildrop();
const FAILED = '-ERR [AUTH] Authentication failed';
const BLOCKED = '-ERR [SYS/TEMP] Too many failed logins, try again later';
const MAX_FAILURES = 3;

/** Whether every one of alice's messages is still in her Maildir. */
function allMessagesPresent(dovecot: Dovecot): boolean {
  const home = join(dovecot.dir, 'mail', 'alice');
  const files = ['new', 'cur'].flatMap((sub) => readdirSync(join(home, sub)));
  return alice.messages.every((m) => files.some((file) => file.startsWith(m.uidl)));
}

/** How many of alice's POP3 sessions Dovecot has logged as ended. */
function aliceDisconnects(dovecot: Dovecot): number {
  return readFileSync(dovecot.logFile, 'utf8').split('\n').filter((l) => l.includes('pop3(alice)') && l.includes('Disconnected')).length;
}

/** A TLS client logged in as alice (or holding popwarden's reply to PASS when the login fails). */
async function loggedIn(pw: PopwardenProcess, source = '127.0.0.1', password = alice.pass): Promise<{ client: RawClient; reply: string }> {
  const client = await RawClient.tls(pw.host, pw.tlsPort, pw.caFile, source);
  await client.readLine();
  await client.command('USER alice');
  client.write(`PASS ${password}\r\n`);
  return { client, reply: await client.readLine() };
}

describe('kill -9 of popwarden, and a restart', { timeout: 120_000 }, () => {
  let dovecot: Dovecot;
  let redis: RedisServer;
  let proxy: FaultProxy;
  let pw: PopwardenProcess;
  const settings = (): Record<string, unknown> => ({
    backend: `${proxy.host}:${proxy.port}`,
    redis: { url: redis.url },
    rate_limit: { user_ip: { max_failures: MAX_FAILURES, window: '1h', block: '1h' } },
    limits: { max_new_connections_per_ip: 0, max_new_connections_per_ip_per_minute: 0 },
  });

  /** kill -9, then a new process with the same config and state directory (its HMAC key). */
  async function killAndRestart(): Promise<void> {
    await pw.kill9();
    pw = await spawnPopwarden(settings(), { stateDir: pw.stateDir });
  }

  before(async () => {
    [dovecot, redis] = await Promise.all([startDovecot({ profile: 'all', authPenalty: false, authFailureDelay: '0' }), startRedis()]);
    proxy = await startFaultProxy({ host: dovecot.host, port: dovecot.port });
    pw = await spawnPopwarden(settings());
  });
  after(async () => {
    await stopAll([pw], proxy, redis, dovecot);
  });

  test('killed during RETR, after a DELE: the client sees no terminator, nothing is deleted, the restart serves every message', async () => {
    // The backend's reply stops after 64 KiB and popwarden waits for the rest: a RETR in flight.
    const stalled = proxy.armNext({ kind: 'stall', trigger: onCommand('RETR'), afterBytes: 64 * 1024 });
    const { client, reply } = await loggedIn(pw);
    assert.equal(reply, '+OK Logged in');
    assert.match(await client.command('DELE 1'), /^\+OK/);
    client.write('RETR 2\r\n');
    await stalled;
    await client.readUntil('Content-Disposition: attachment');
    const disconnects = aliceDisconnects(dovecot);
    await pw.kill9();
    await client.whenClosed;
    assert.equal(client.all().includes('\r\n.\r\n'), false, 'a RETR cut by the kill looked complete');
    // Dovecot ends the session it lost without QUIT: no UPDATE state, nothing deleted.
    await dovecot.whenLogged(() => (aliceDisconnects(dovecot) > disconnects ? true : undefined), 10_000);
    assert.equal(allMessagesPresent(dovecot), true, 'a message was deleted without QUIT');
    proxy.clear();

    pw = await spawnPopwarden(settings(), { stateDir: pw.stateDir });
    const again = await loggedIn(pw);
    assert.equal(again.reply, '+OK Logged in');
    assert.match(await again.client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} `));
    assert.match(await again.client.command('QUIT'), /^\+OK/);
  });

  test('killed after DELE, before QUIT: nothing is deleted', async () => {
    const { client, reply } = await loggedIn(pw);
    assert.equal(reply, '+OK Logged in');
    for (const n of [1, 3]) assert.match(await client.command(`DELE ${n}`), /^\+OK/);
    const disconnects = aliceDisconnects(dovecot);
    await killAndRestart();
    await client.whenClosed;
    await dovecot.whenLogged(() => (aliceDisconnects(dovecot) > disconnects ? true : undefined), 10_000);
    assert.equal(allMessagesPresent(dovecot), true, 'a message was deleted without QUIT');
    const again = await loggedIn(pw);
    assert.match(await again.client.command('STAT'), new RegExp(`^\\+OK ${alice.messages.length} `));
    assert.match(await again.client.command('QUIT'), /^\+OK/);
  });

  test('the failed-login counts in Redis survive the kill, a guess in flight at the kill included', async () => {
    const source = '127.0.0.7';
    const key = `popwarden:uip:{alice@${source}}`;
    for (let n = 1; n < MAX_FAILURES; n++) {
      const { client, reply } = await loggedIn(pw, source, `wrong-${n}`);
      assert.equal(reply, FAILED);
      client.destroy();
    }
    assert.equal(await redis.cli('get', key), String(MAX_FAILURES - 1));
    // One more guess, its verdict held back by the backend, and popwarden dies meanwhile.
    const held = proxy.armNext({ kind: 'never-answer', trigger: afterCommand('AUTH') });
    const inFlight = await RawClient.tls(pw.host, pw.tlsPort, pw.caFile, source);
    await inFlight.readLine();
    await inFlight.command('USER alice');
    inFlight.write(`PASS wrong-${MAX_FAILURES}\r\n`);
    await held;
    await killAndRestart();
    await inFlight.whenClosed;
    proxy.clear();
    assert.equal(await redis.cli('get', key), String(MAX_FAILURES));

    // After the restart the pair is full: even the right password is refused there...
    const blocked = await loggedIn(pw, source);
    assert.equal(blocked.reply, BLOCKED);
    blocked.client.destroy();
    // ...and alice logs in from elsewhere.
    const elsewhere = await loggedIn(pw, '127.0.0.8');
    assert.equal(elsewhere.reply, '+OK Logged in');
    assert.match(await elsewhere.client.command('QUIT'), /^\+OK/);
  });
});
