/**
 * Legacy behaviour popwarden tolerates (issue 12 point 8), for the bytes no real server we run
 * sends: a backend that answers one command with several lines, LOGIN-DELAY, AUTH mechanisms a
 * backend accepts without advertising them, UIDLs that change between sessions, extensions whose
 * replies popwarden cannot frame, and the APOP retry as the failed-login guard sees it. The
 * conversations are scripts (test/harness/script.ts); the real servers are in
 * test/e2e/legacy-backends.test.ts and test/e2e/legacy-commands.test.ts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSession, script, scriptedBackends, type ScriptedSession } from '../harness/script.js';
import type { LoginGuard, LoginVerdict } from '../../src/auth/login-guard.js';
import { ApopUsers } from '../../src/backend/apop-users.js';
import { apopDigest } from '../../src/auth/apop.js';
import { cramMd5Response } from '../../src/auth/cram-md5.js';
import type { Config } from '../../src/config/types.js';

const CAPA_USER = ['C: CAPA', 'S: +OK', 'S: USER', 'S: .'];
/** A backend that offers only USER (no STLS, no SASL) and accepts alice/secret. */
const BACKEND_LOGIN = ['S: +OK backend ready', ...CAPA_USER, 'C: USER alice', 'S: +OK', 'C: PASS secret', 'S: +OK Logged in.'];
/** The same without CAPA (an RFC 1939 server such as popa3d). */
const BACKEND_LOGIN_NO_CAPA = ['S: +OK', 'C: CAPA', 'S: -ERR', 'C: USER alice', 'S: +OK', 'C: PASS secret', 'S: +OK'];

const GREETING = 'S: +OK popwarden test ready';
const CLIENT_LOGIN = [GREETING, 'C: USER alice', 'S: +OK Send PASS', 'C: PASS secret', 'S: +OK Logged in'];
const BACKEND_LOST = 'S: -ERR [SYS/TEMP] Connection to the mail server was lost';

/** A guard that allows everything and records what it is told. */
function recordingGuard(): { guard: LoginGuard; reservations: () => number; verdicts: LoginVerdict[] } {
  let reservations = 0;
  const verdicts: LoginVerdict[] = [];
  const guard: LoginGuard = {
    reserve: () => {
      reservations += 1;
      const settle = (verdict: LoginVerdict): Promise<void> => {
        verdicts.push(verdict);
        return Promise.resolve();
      };
      return Promise.resolve({ kind: 'allowed', settle });
    },
    settled: () => Promise.resolve(),
    settleReservations: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  return { guard, reservations: () => reservations, verdicts };
}

describe('legacy backends: bytes no real server of ours sends (issue 12.8)', () => {
  const { backend, stopAll } = scriptedBackends();
  after(stopAll);
  /**
   * Logs alice in through a fresh session on the TLS listener, then plays `client` against a backend
   * that plays `server` after its login (`login`); resolves once both scripts are done.
   */
  const afterLogin = async (server: readonly string[], client: readonly string[], login = BACKEND_LOGIN): Promise<ScriptedSession> => {
    const started = await backend([...login, ...server]);
    const pop = await openSession({ backend: started, listener: 'tls' });
    await script(pop, [...CLIENT_LOGIN, ...client]);
    await started.finished();
    return pop;
  };

  describe('a backend that answers one command with several lines never shifts a reply', () => {
    test('two -ERR lines for one command: the first is the reply, the second ends the link with a clean -ERR', async () => {
      // NOOP is pipelined behind XFOO: it must never get XFOO's second line as its reply.
      const pop = await afterLogin(
        ['C: XFOO', 'S: -ERR unknown command', 'S: -ERR unknown command'],
        ['C: XFOO', 'C: NOOP', 'S: -ERR unknown command', BACKEND_LOST, 'S: (end)'],
      );
      assert.match(pop.logs.text(), /"reason":"backend-protocol-error"/);
    });

    test('a line after a complete RETR: the message arrives whole, then a clean -ERR and the end', async () => {
      const message = ['S: +OK 9 octets', 'S: Subject: x', 'S: ', 'S: body', 'S: .'];
      await afterLogin(['C: RETR 1', ...message, 'S: -ERR stray'], ['C: RETR 1', ...message, BACKEND_LOST, 'S: (end)']);
    });

    test('a second line in a write of its own: the same clean -ERR', async () => {
      const reply = ['C: XFOO', 'S: -ERR unknown command'];
      await afterLogin([...reply, 'S: (flush)', 'S: -ERR late'], [...reply, BACKEND_LOST, 'S: (end)']);
    });

    test('an RFC 1939 backend (no CAPA) never gets an extension line longer than its 47 octets; the session goes on', async () => {
      const afterRefusal = ['C: XFOO short', 'S: -ERR unknown', 'C: NOOP', 'S: +OK'];
      // 48 octets with its CRLF; an argument of 40 would fit.
      const tooLong = [`C: XFOO ${'x'.repeat(41)}`, 'S: -ERR Command too long for the mail server'];
      await afterLogin(afterRefusal, [...tooLong, ...afterRefusal], BACKEND_LOGIN_NO_CAPA);
    });
  });

  describe('extensions popwarden cannot frame get one clear -ERR, and the session goes on', () => {
    test("qpopper's XTND (XMIT reads a message from the client, XLIST answers with a list): refused here", async () => {
      await afterLogin(['C: NOOP', 'S: +OK'], [
        'C: XTND XMIT',
        'S: -ERR XTND is not available through this server',
        'C: XTND XLIST Subject',
        'S: -ERR XTND is not available through this server',
        'C: NOOP',
        'S: +OK',
      ]);
    });

    test('LANG without an argument has a multi-line reply (RFC 6856) and is relayed as one', async () => {
      const exchange = ['C: LANG', 'S: +OK Language listing follows', 'S: en English', 'S: .', 'C: LANG en', 'S: +OK en'];
      await afterLogin(exchange, exchange);
    });
  });

  describe('LOGIN-DELAY (RFC 2449 §6.8)', () => {
    test('the CAPA after login relays the backend\'s LOGIN-DELAY', async () => {
      await afterLogin(['C: CAPA', 'S: +OK', 'S: TOP', 'S: LOGIN-DELAY 900', 'S: UIDL', 'S: .'], [
        'C: CAPA',
        'S: +OK Capability list follows',
        'S: TOP',
        'S: LOGIN-DELAY 900',
        'S: UIDL',
        'S: RESP-CODES',
        'S: AUTH-RESP-CODE',
        'S: USER',
        'S: SASL PLAIN LOGIN',
        'S: .',
      ]);
    });

    test('every login reaches the backend, whose [LOGIN-DELAY] refusal the client gets; not counted as a wrong password', async () => {
      const tooSoon = ['S: +OK backend ready', ...CAPA_USER, 'C: USER alice', 'S: +OK', 'C: PASS secret', 'S: -ERR [LOGIN-DELAY] wait 900 s'];
      const server = await backend([tooSoon, tooSoon, BACKEND_LOGIN]);
      const recorded = recordingGuard();
      const pop = await openSession({ backend: server, listener: 'tls', guard: recorded.guard });
      const delayed = 'S: -ERR [LOGIN-DELAY] Logged in too recently, try again later';
      await script(pop, [
        GREETING,
        'C: USER alice',
        'S: +OK Send PASS',
        'C: PASS secret',
        delayed,
        'C: USER alice',
        'S: +OK Send PASS',
        'C: PASS secret',
        delayed,
        'C: USER alice',
        'S: +OK Send PASS',
        'C: PASS secret',
        'S: +OK Logged in',
      ]);
      assert.equal(server.connections().length, 3, 'popwarden keeps no backend login to hand out early');
      assert.deepEqual(recorded.verdicts, ['not_judged', 'not_judged', 'accepted']);
    });
  });

  test('UIDLs that change between sessions pass through as the backend gives them: popwarden keeps none', async () => {
    const server = await backend([
      [...BACKEND_LOGIN, 'C: UIDL', 'S: +OK', 'S: 1 aaa', 'S: .', 'C: UIDL 1', 'S: +OK 1 aaa'],
      [...BACKEND_LOGIN, 'C: UIDL', 'S: +OK', 'S: 1 zzz', 'S: .', 'C: UIDL 1', 'S: +OK 1 zzz'],
    ]);
    for (const uid of ['aaa', 'zzz']) {
      const pop = await openSession({ backend: server, listener: 'tls' });
      await script(pop, [...CLIENT_LOGIN, 'C: UIDL', 'S: +OK', `S: 1 ${uid}`, 'S: .', 'C: UIDL 1', `S: +OK 1 ${uid}`]);
      pop.client.destroy();
      await pop.session.closed;
    }
  });

  describe('AUTH mechanisms a backend accepts without advertising them', () => {
    const challenge = Buffer.from('<1.2@backend>', 'latin1');
    const cramLogin = (capa: readonly string[]): string[] => [
      'S: +OK backend ready',
      ...capa,
      'C: AUTH CRAM-MD5',
      `S: + ${challenge.toString('base64')}`,
      `C: ${cramMd5Response('alice', Buffer.from('secret'), challenge)}`,
      'S: +OK Logged in.',
    ];
    const forced =
      (mechanism: 'cram-md5') =>
      (config: Config): Config => ({ ...config, backends: config.backends.map((backend) => ({ ...backend, auth: mechanism })) });

    test('backend_auth cram-md5 uses it although CAPA does not list it (the operator knows the server)', async () => {
      const server = await backend([...cramLogin(CAPA_USER), 'C: NOOP', 'S: +OK']);
      const pop = await openSession({ backend: server, listener: 'tls', config: forced('cram-md5') });
      await script(pop, [...CLIENT_LOGIN, 'C: NOOP', 'S: +OK']);
      await server.finished();
    });

    test('auto never tries an unadvertised mechanism: it logs in with what CAPA lists', async () => {
      await afterLogin(['C: NOOP', 'S: +OK'], ['C: NOOP', 'S: +OK']);
    });

    test('a backend that refuses the AUTH command itself has judged no password: not counted', async () => {
      const server = await backend(['S: +OK backend ready', ...CAPA_USER, 'C: AUTH CRAM-MD5', 'S: -ERR Unsupported mechanism']);
      const recorded = recordingGuard();
      const pop = await openSession({ backend: server, listener: 'tls', guard: recorded.guard, config: forced('cram-md5') });
      await script(pop, [GREETING, 'C: USER alice', 'S: +OK Send PASS', 'C: PASS secret', 'S: -ERR [SYS/TEMP] Mail server unavailable, try again later']);
      assert.deepEqual(recorded.verdicts, ['not_judged']);
    });
  });

  describe('the APOP retry in clear, as the failed-login guard sees it', () => {
    const timestamp = '<1.2@backend>';
    const apopRefused = (password: string): string[] => [
      `S: +OK ready ${timestamp}`,
      ...CAPA_USER,
      `C: APOP alice ${apopDigest(timestamp, Buffer.from(password))}`,
      'S: -ERR authentication failed',
    ];
    const inClear = (password: string, verdict: string): string[] => [
      `S: +OK ready ${timestamp}`,
      ...CAPA_USER,
      'C: USER alice',
      'S: +OK',
      `C: PASS ${password}`,
      `S: ${verdict}`,
    ];

    test('APOP refused, USER/PASS refused: one reservation, one refusal, one reply', async () => {
      const server = await backend([apopRefused('wrong'), inClear('wrong', '-ERR authentication failed')]);
      const recorded = recordingGuard();
      const pop = await openSession({ backend: server, listener: 'tls', guard: recorded.guard });
      await script(pop, [GREETING, 'C: USER alice', 'S: +OK Send PASS', 'C: PASS wrong', 'S: -ERR [AUTH] Authentication failed']);
      await server.finished(2);
      assert.equal(recorded.reservations(), 1);
      assert.deepEqual(recorded.verdicts, ['refused']);
      assert.equal(pop.logs.entries().filter((l) => l['event'] === 'login').length, 1);
    });

    test('APOP refused, USER/PASS accepted: one reservation, accepted', async () => {
      const server = await backend([apopRefused('secret'), [...inClear('secret', '+OK'), 'C: NOOP', 'S: +OK']]);
      const recorded = recordingGuard();
      const pop = await openSession({ backend: server, listener: 'tls', guard: recorded.guard });
      await script(pop, [...CLIENT_LOGIN, 'C: NOOP', 'S: +OK']);
      assert.equal(recorded.reservations(), 1);
      assert.deepEqual(recorded.verdicts, ['accepted']);
    });

    test('a user known to log in with APOP gets no retry: one guess meets one secret', async () => {
      const server = await backend([apopRefused('wrong'), inClear('wrong', '+OK')]);
      const apopUsers = new ApopUsers({ lowerCase: true, realmSeparators: '@%', pattern: undefined });
      apopUsers.remember(`${server.host}:${server.port}`, 'alice', 'apop', '127.0.0.1');
      const pop = await openSession({ backend: server, listener: 'tls', apopUsers });
      await script(pop, [GREETING, 'C: USER alice', 'S: +OK Send PASS', 'C: PASS wrong', 'S: -ERR [AUTH] Authentication failed']);
      assert.equal(server.connections().length, 1);
    });

    test('a backend that refuses APOP with [IN-USE] or [SYS/TEMP] has not refused the password: no retry', async () => {
      const busy = [`S: +OK ready ${timestamp}`, ...CAPA_USER, `C: APOP alice ${apopDigest(timestamp, Buffer.from('secret'))}`, 'S: -ERR [IN-USE] locked'];
      const server = await backend([busy, inClear('secret', '+OK')]);
      const pop = await openSession({ backend: server, listener: 'tls' });
      await script(pop, [GREETING, 'C: USER alice', 'S: +OK Send PASS', 'C: PASS secret', 'S: -ERR [IN-USE] Mailbox is in use by another session, try again later']);
      assert.equal(server.connections().length, 1);
    });
  });
});
