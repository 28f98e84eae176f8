/**
 * Client login over TLS: USER/PASS, AUTH PLAIN and LOGIN, cancellation and malformed SASL,
 * pipelining behind a login, the fixed failure reply and delay, the invalid-command budget.
 * SECURITY-TESTS.md, A-06 (delay), A-08, A-09, B-06.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeBackend, legacyScript, type FakeBackend } from '../harness/fake-backend.js';
import { startTestProxy, type TestProxy } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { FAILURE_SPREAD } from '../../src/session/failure-deadline.js';

const b64 = (text: string): string => Buffer.from(text, 'latin1').toString('base64');
const PASSWORD = 's3cret!pw';

describe('client login', () => {
  let backend: FakeBackend;
  let proxy: TestProxy;

  before(async () => {
    backend = await startFakeBackend(
      legacyScript({
        cramMd5: true,
        onCommand: ({ conn, verb, args, state }) => {
          // Backends word their refusals in ways that enumerate users (B-06) or carry codes.
          if (state !== 'AUTHORIZATION' || verb !== 'USER') return;
          if (args[0] === 'ghost') return void conn.write('-ERR unknown user\r\n'), true;
          if (args[0] === 'busy') return void conn.write('-ERR [IN-USE] Mailbox locked by another session\r\n'), true;
          if (args[0] === 'slowpoke') return void conn.write('-ERR [LOGIN-DELAY] wait 5 minutes\r\n'), true;
          return;
        },
      }),
    );
    proxy = await startTestProxy({
      backend: { host: backend.host, port: backend.port, auth: 'user' },
      limits: { maxInvalidCommands: 2 },
    });
  });
  after(async () => {
    await proxy.stop();
    await backend.stop();
  });

  // A greeted TLS client, as large-messages.test.ts and others open theirs: each file keeps the
  // few lines next to the logins it builds on them.
  const connect = async (): Promise<RawClient> => {
    const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
    await client.readLine();
    return client;
  };

  test('USER always answers +OK and contacts no backend (A-05)', async () => {
    const before = backend.connections().length;
    const client = await connect();
    assert.equal(await client.command('USER nobody-at-all'), '+OK Send PASS');
    assert.equal(await client.command('user alice'), '+OK Send PASS', 'keywords are case-insensitive (R-02)');
    assert.equal(backend.connections().length, before);
    client.destroy();
  });

  test('CAPA inside TLS lists USER and SASL PLAIN LOGIN, and no STLS (R-07)', async () => {
    const client = await connect();
    assert.match(await client.command('capa'), /^\+OK/);
    const body = (await client.readUntilTerminator()).toString('latin1').split('\r\n');
    assert.ok(body.includes('USER'));
    assert.ok(body.includes('SASL PLAIN LOGIN'));
    assert.ok(!body.includes('STLS'));
    client.destroy();
  });

  test('USER/PASS logs in and the backend gets the password with its spaces intact (R-02)', async () => {
    const client = await connect();
    assert.equal(await client.command('USER alice'), '+OK Send PASS');
    assert.equal(await client.command(`PASS ${PASSWORD}`), '+OK Logged in');
    assert.match(await client.command('STAT'), /^\+OK 3 \d+$/);
    client.destroy();
    const wrongWithSpaces = await connect();
    await wrongWithSpaces.command('USER alice');
    assert.equal(await wrongWithSpaces.command('PASS my secret pw'), '-ERR [AUTH] Authentication failed');
    wrongWithSpaces.destroy();
    const last = backend.connections().at(-1)!;
    assert.ok(last.lines().includes('PASS my secret pw'));
  });

  test('unknown user and wrong password get byte-identical replies, never backend text (B-06, A-05)', async () => {
    const replies: string[] = [];
    for (const user of ['ghost', 'alice']) {
      const client = await connect();
      await client.command(`USER ${user}`);
      replies.push(await client.command('PASS wrong-password'));
      client.destroy();
    }
    assert.deepEqual(replies, ['-ERR [AUTH] Authentication failed', '-ERR [AUTH] Authentication failed']);
    assert.match(proxy.logText(), /"backendText":"unknown user"/, 'the operator still sees why');
  });

  test('backend [IN-USE] and [LOGIN-DELAY] reach the client as those codes, not [AUTH] (R-09)', async () => {
    for (const [user, code] of [['busy', 'IN-USE'], ['slowpoke', 'LOGIN-DELAY']] as const) {
      const client = await connect();
      await client.command(`USER ${user}`);
      const reply = await client.command('PASS whatever');
      assert.match(reply, new RegExp(`^-ERR \\[${code}\\] `));
      assert.doesNotMatch(reply, /locked|wait 5/, 'the backend text stays behind');
      client.destroy();
    }
  });

  test('AUTH PLAIN with and without initial response, and "=" as empty (R-12)', async () => {
    const message = b64(`\0alice\0${PASSWORD}`);
    const initial = await connect();
    assert.equal(await initial.command(`AUTH PLAIN ${message}`), '+OK Logged in');
    initial.destroy();
    const continued = await connect();
    assert.equal(await continued.command('AUTH PLAIN'), '+ ');
    assert.equal(await continued.command(message), '+OK Logged in');
    continued.destroy();
    const empty = await connect();
    assert.equal(await empty.command('AUTH PLAIN ='), '-ERR Invalid SASL response');
    empty.destroy();
  });

  test('AUTH LOGIN answers the challenges clients expect, also when pipelined (R-08)', async () => {
    const client = await connect();
    client.write(`AUTH LOGIN\r\n${b64('alice')}\r\n${b64(PASSWORD)}\r\n`);
    assert.equal(await client.readLine(), '+ VXNlcm5hbWU6');
    assert.equal(await client.readLine(), '+ UGFzc3dvcmQ6');
    assert.equal(await client.readLine(), '+OK Logged in');
    client.destroy();
  });

  test('"*" cancels, bad base64 and unknown mechanisms are refused; AUTH lists mechanisms (R-12)', async () => {
    const client = await connect();
    assert.equal(await client.command('AUTH PLAIN'), '+ ');
    assert.equal(await client.command('*'), '-ERR Authentication cancelled');
    client.destroy();
    const other = await connect();
    assert.equal(await other.command('AUTH PLAIN !!!'), '-ERR Invalid SASL response');
    assert.equal(await other.command('AUTH XUNKNOWN'), '-ERR Unsupported authentication mechanism');
    other.destroy();
    const listing = await connect();
    assert.equal(await listing.command('AUTH'), '+OK');
    assert.equal((await listing.readUntilTerminator()).toString('latin1'), 'PLAIN\r\nLOGIN\r\n.\r\n');
    listing.destroy();
  });

  test('PLAIN with a foreign authzid is refused and the backend never hears the victim (R-13)', async () => {
    const before = backend.connections().length;
    const client = await connect();
    assert.equal(await client.command(`AUTH PLAIN ${b64('victim\0mallory\0mallorypw')}`), '-ERR [AUTH] Authentication failed');
    client.destroy();
    assert.equal(backend.connections().length, before);
  });

  test('commands pipelined behind PASS wait for the login and keep their order (R-08)', async () => {
    const client = await connect();
    client.write(`USER alice\r\nPASS ${PASSWORD}\r\nSTAT\r\nLIST\r\nQUIT\r\n`);
    assert.equal(await client.readLine(), '+OK Send PASS');
    assert.equal(await client.readLine(), '+OK Logged in');
    assert.match(await client.readLine(), /^\+OK 3 \d+$/);
    assert.match(await client.readLine(), /^\+OK/);
    assert.match((await client.readUntilTerminator()).toString('latin1'), /^1 \d+\r\n2 \d+\r\n3 \d+\r\n\.\r\n$/);
    assert.match(await client.readLine(), /^\+OK/);
    assert.equal(await client.closedWithin(2_000), true);
  });

  test('an invalid command and a NOOP pipelined together get -ERR then the NOOP reply (R-08)', async () => {
    const client = await connect();
    await client.command('USER alice');
    await client.command(`PASS ${PASSWORD}`);
    client.write('INVALID COMMAND WITH ARGUMENTS\r\nNOOP\r\n');
    assert.match(await client.readLine(), /^-ERR/);
    assert.equal(await client.readLine(), '+OK');
    client.destroy();
  });

  test('the third invalid command closes the connection, also when pipelined (A-08)', async () => {
    const client = await connect();
    client.write('FOO\r\nBAR\r\nBAZZ\r\nCAPA\r\n');
    assert.equal(await client.readLine(), '-ERR Unknown command');
    assert.equal(await client.readLine(), '-ERR Unknown command');
    assert.equal(await client.readLine(), '-ERR Too many invalid commands, closing connection');
    assert.equal(await client.closedWithin(2_000), true);
    assert.equal(client.unread().length, 0, 'the CAPA behind them was never served');
  });

  test('255-octet command accepted, an over-long one refused and its tail never run (R-03)', async () => {
    const client = await connect();
    assert.equal(await client.command(`USER ${'a'.repeat(248)}`), '+OK Send PASS');
    client.write(`USER ${'a'.repeat(4000)}NOOP\r\nCAPA\r\n`);
    assert.equal(await client.readLine(), '-ERR Line too long');
    assert.equal(await client.closedWithin(2_000), true);
    assert.equal(client.unread().length, 0);
  });

  test('passwords and SASL payloads never reach the log; usernames are logged as data (A-09)', async () => {
    const client = await connect();
    await client.command(`AUTH PLAIN ${b64('\0alice\0wrong-pw-for-log-test')}`);
    await client.command('USER a%s%n');
    await client.command('PASS another-secret-pw');
    client.destroy();
    const log = proxy.logText();
    assert.doesNotMatch(log, /wrong-pw-for-log-test|another-secret-pw/);
    assert.doesNotMatch(log, new RegExp(b64('\0alice\0wrong-pw-for-log-test').slice(0, 16)));
    assert.match(log, /"user":"a%s%n"/);
  });

  test('a SASL password with CR, LF or NUL is refused: no extra backend commands, no limiter bypass', async () => {
    const before = backend.connections().length;
    const client = await connect();
    const injected = b64(`\0mallory\0wrong\r\nUSER alice\r\nPASS ${PASSWORD}\r\nDELE 1`);
    assert.equal(await client.command(`AUTH PLAIN ${injected}`), '-ERR Invalid SASL response');
    assert.equal(await client.command('AUTH LOGIN'), '+ VXNlcm5hbWU6');
    assert.equal(await client.command(b64('mallory')), '+ UGFzc3dvcmQ6');
    assert.equal(await client.command(b64('wrong\nQUIT')), '-ERR Invalid SASL response');
    client.destroy();
    const other = await connect(); // the invalid-command budget here is 2
    assert.equal(await other.command(`AUTH PLAIN ${b64('\0mallory\0a\0b')}`), '-ERR Invalid SASL response');
    other.destroy();
    assert.equal(backend.connections().length, before, 'nothing reached the backend');
  });

  test('a username with a line break or escape is refused and never reaches the backend', async () => {
    const before = backend.connections().length;
    const client = await connect();
    assert.equal(await client.command(`AUTH PLAIN ${b64('\0alice\r\nDELE 1\0pw')}`), '-ERR Invalid SASL response');
    client.write(`AUTH LOGIN ${b64('x\x1b[2J')}\r\n`);
    assert.equal(await client.readLine(), '-ERR Invalid SASL response');
    client.destroy();
    assert.equal(backend.connections().length, before);
    assert.doesNotMatch(proxy.logText(), /\x1b|DELE 1/);
  });
});

describe('failure delay', () => {
  test('a failed login is answered no sooner than the delay, however fast the backend (A-06)', async () => {
    const backend = await startFakeBackend(legacyScript());
    const proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port }, authFailureDelayMs: 400 });
    try {
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      await client.readLine();
      await client.command('USER alice');
      const started = Date.now();
      assert.equal(await client.command('PASS wrong'), '-ERR [AUTH] Authentication failed');
      assert.ok(Date.now() - started >= 390, `answered after ${Date.now() - started} ms`);
      const good = Date.now();
      await client.command('USER alice');
      assert.equal(await client.command(`PASS ${PASSWORD}`), '+OK Logged in');
      assert.ok(Date.now() - good < 300, 'success is not delayed');
      client.destroy();
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  });
});

describe('failure timing (A-06)', () => {
  /**
   * Times 15 rounds of a failed login for an unknown user (the backend refuses USER at once) and
   * for alice with a wrong password (refused after `refusalMs`, as servers that hash only for
   * known users do), through popwarden with `delayMs`; returns both medians and the proxy's log.
   */
  async function failureMedians(refusalMs: number, delayMs: number): Promise<{ ghost: number; alice: number; log: string }> {
    const backend = await startFakeBackend(
      legacyScript({
        onCommand: async ({ conn, verb, args, state }) => {
          if (state !== 'AUTHORIZATION' || verb !== 'USER' || args[0] !== 'ghost') return;
          await conn.write('-ERR no such user\r\n');
          return true;
        },
        authFailureDelayMs: refusalMs,
      }),
    );
    // 60 commands on one connection, past limits.max_commands_before_login: off for this measurement.
    const proxy = await startTestProxy({ backend: { host: backend.host, port: backend.port, auth: 'user' }, authFailureDelayMs: delayMs, limits: { maxCommandsBeforeLogin: 0 } });
    const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    try {
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      await client.readLine();
      const timings: Record<'ghost' | 'alice', number[]> = { ghost: [], alice: [] };
      for (let i = 0; i < 15; i++) {
        for (const user of ['ghost', 'alice'] as const) {
          await client.command(`USER ${user}`);
          const started = process.hrtime.bigint();
          assert.equal(await client.command('PASS wrong'), '-ERR [AUTH] Authentication failed');
          timings[user].push(Number(process.hrtime.bigint() - started) / 1e6);
        }
      }
      client.destroy();
      return { ghost: median(timings.ghost), alice: median(timings.alice), log: proxy.logText() };
    } finally {
      await proxy.stop();
      await backend.stop();
    }
  }

  function assertSameTime(medians: { ghost: number; alice: number }, delayMs: number): void {
    const difference = Math.abs(medians.ghost - medians.alice);
    // Each failure also gets a random part of FAILURE_SPREAD steps, the same draw for both kinds:
    // noise on each median of 15 (a few ms), allowed for, still far below the backend's difference.
    const allowed = 10 + (delayMs * FAILURE_SPREAD) / 2;
    assert.ok(difference < allowed, `medians differ by ${difference.toFixed(1)} ms (ghost ${medians.ghost.toFixed(1)}, alice ${medians.alice.toFixed(1)})`);
  }

  test('an unknown user and a wrong password take the same time, though the backend differs by 60 ms', async () => {
    assertSameTime(await failureMedians(60, 150), 150);
  });

  test('they still take the same time when the backend refuses a wrong password slower than the delay (issue 9.3)', async () => {
    // Like solid-pop3d behind --backend-auth user: a wrong password is refused after longer than
    // auth_failure_delay. A delay that is only a minimum let that difference through.
    const medians = await failureMedians(160, 100);
    assertSameTime(medians, 100);
    const warnings = medians.log.match(/longer to refuse a login than auth_failure_delay/g) ?? [];
    assert.equal(warnings.length, 1, 'the warning is rate-limited, not one per login');
  });
});
