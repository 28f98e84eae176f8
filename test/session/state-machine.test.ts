/**
 * The session's state machine, driven over an in-memory socket pair: the client's conversation
 * and the backend's are scripts (test/harness/script.ts). The network paths (listeners, TLS,
 * real servers and clients) are the e2e suites' job; these pin the order and content of replies.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { openSession, script, scriptedBackends } from '../harness/script.js';
import type { FakeConn } from '../harness/fake-backend.js';

/** A backend that offers only USER (no STLS, no SASL) and accepts alice/secret. */
const BACKEND_LOGIN = [
  'S: +OK backend ready',
  'C: CAPA',
  'S: +OK',
  'S: USER',
  'S: .',
  'C: USER alice',
  'S: +OK',
  'C: PASS secret',
  'S: +OK Logged in.',
];

const CLIENT_LOGIN = ['S: +OK popwarden test ready', 'C: USER alice', 'S: +OK Send PASS', 'C: PASS secret', 'S: +OK Logged in'];

// Each test is one whole C:/S: conversation, the specification it checks; conversations that open
// alike stay written out rather than built from shared pieces.
describe('session state machine (in-memory client, scripted backend)', () => {
  const { backend, stopAll } = scriptedBackends();
  after(stopAll);

  test('USER/PASS: popwarden greets, logs in to the backend, then relays', async () => {
    const server = await backend([...BACKEND_LOGIN, 'C: STAT', 'S: +OK 2 320']);
    const pop = await openSession({ backend: server, listener: 'tls' });
    await script(pop, [...CLIENT_LOGIN, 'C: STAT', 'S: +OK 2 320']);
    await server.finished();
    assert.equal(server.connections().length, 1);
  });

  test('STLS on the implicit-TLS listener is refused, and the session goes on', async () => {
    const server = await backend([]);
    const pop = await openSession({ backend: server, listener: 'tls' });
    await script(pop, [
      'S: +OK popwarden test ready',
      'C: STLS',
      'S: -ERR Command not permitted when TLS is active',
      'C: QUIT',
      'S: +OK Bye',
      'S: (end)',
    ]);
    await pop.session.closed;
    assert.equal(server.connections().length, 0, 'nothing reached the backend');
  });

  test('transaction commands before login get -ERR and never reach the backend', async () => {
    const server = await backend([]);
    const pop = await openSession({ backend: server, listener: 'tls' });
    await script(pop, [
      'S: +OK popwarden test ready',
      'C: STAT',
      'S: -ERR Unknown command',
      'C: RETR 1',
      'S: -ERR Unknown command',
      'C: PASS secret',
      'S: -ERR Send USER first',
      'C: QUIT',
      'S: +OK Bye',
      'S: (end)',
    ]);
    assert.equal(server.connections().length, 0, 'nothing reached the backend');
  });

  test('pipelined commands are answered in order, the login holding back those behind it', async () => {
    const server = await backend([...BACKEND_LOGIN, 'C: STAT', 'S: +OK 2 320', 'C: NOOP', 'S: +OK']);
    const pop = await openSession({ backend: server, listener: 'tls' });
    // The four C: lines go out in one write.
    await script(pop, [
      'S: +OK popwarden test ready',
      'C: USER alice',
      'C: PASS secret',
      'C: STAT',
      'C: NOOP',
      'S: +OK Send PASS',
      'S: +OK Logged in',
      'S: +OK 2 320',
      'S: +OK',
    ]);
    await server.finished();
  });

  test('QUIT after login is relayed: the backend commits, its reply reaches the client, then both close', async () => {
    const server = await backend([...BACKEND_LOGIN, 'C: QUIT', 'S: +OK Logging out.', 'S: (end)']);
    const pop = await openSession({ backend: server, listener: 'tls' });
    await script(pop, [...CLIENT_LOGIN, 'C: QUIT', 'S: +OK Logging out.', 'S: (end)']);
    await server.finished();
    await pop.session.closed;
  });

  test('a backend that hangs up inside RETR gives the client no terminator', async () => {
    const server = await backend([
      ...BACKEND_LOGIN,
      'C: RETR 1',
      'S: +OK 120 octets',
      'S: Subject: cut short',
      'S: ',
      'S: the first line of the body',
      'S: (reset)',
    ]);
    const pop = await openSession({ backend: server, listener: 'tls' });
    // (end): the client sees the stream end with nothing after the last relayed line, no ".".
    await script(pop, [
      ...CLIENT_LOGIN,
      'C: RETR 1',
      'S: +OK 120 octets',
      'S: Subject: cut short',
      'S: ',
      'S: the first line of the body',
      'S: (end)',
    ]);
    await pop.session.closed;
  });
  // The backend fails while the session waits for the client to drain a reply, with no command
  // queued: the session is still serving then, and must act on the failure once it is done.
  const failures = [
    { what: 'speaks out of turn (its link ends, B-04)', reason: 'backend-protocol-error', fail: (conn: FakeConn) => void conn.write('+OK unsolicited\r\n') },
    { what: 'hangs up', reason: 'backend-closed', fail: (conn: FakeConn) => conn.end() },
  ];
  for (const { what, reason, fail } of failures) {
    test(`a backend that ${what} while the client drains a reply: the session closes once the reply is taken`, async () => {
      // The reply is one TLS record's worth, 16,384 octets (5 + 23 × 712 + 3), written at once: the
      // record reaches the client, and a write that fills the socket's 16 KiB buffer must drain
      // before the session is idle.
      const body = Array.from({ length: 23 }, (_, i) => `S: ${String(i).padStart(3, '0')}${'x'.repeat(707)}`);
      const server = await backend([...BACKEND_LOGIN, 'C: RETR 1', 'S: +OK', ...body, 'S: .']);
      const pop = await openSession({ backend: server, listener: 'tls' });
      await script(pop, CLIENT_LOGIN);
      // 4 KiB: what TLS may still write unasked (session tickets) goes through; the reply does not.
      pop.wire.holdWindow(4_096);
      await script(pop, ['C: RETR 1', 'S: +OK', ...body, 'S: .']);
      await server.finished();
      // The reply is relayed whole and the session waits for the client's window; the backend's
      // link is over once its socket has closed.
      const conn = server.connections()[0]!;
      fail(conn);
      await conn.whenClosed;
      pop.wire.openWindow();
      await script(pop, ['S: -ERR [SYS/TEMP] Connection to the mail server was lost', 'S: (end)']);
      await pop.session.closed;
      const closed = pop.logs.entries().filter((l) => l['msg'] === 'session closed');
      assert.deepEqual(closed.map((l) => l['reason']), [reason]);
    });
  }
});
