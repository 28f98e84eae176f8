/** The AUTHORIZATION command table: which verbs exist before login, and which need TLS. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTHORIZATION_COMMANDS, TRANSACTION_COMMAND } from '../../src/session/commands.js';

test('before login, exactly CAPA, STLS and QUIT work without TLS', () => {
  const withoutTls = Object.entries(AUTHORIZATION_COMMANDS)
    .filter(([, spec]) => !spec.tlsRequired)
    .map(([verb]) => verb)
    .sort();
  assert.deepEqual(withoutTls, ['CAPA', 'QUIT', 'STLS']);
});

test('every credential-bearing verb requires TLS', () => {
  for (const verb of ['USER', 'PASS', 'APOP', 'AUTH']) {
    assert.equal(AUTHORIZATION_COMMANDS[verb]?.tlsRequired, true, verb);
  }
});

test('no TRANSACTION verb is reachable before login, and the relay requires TLS', () => {
  for (const verb of ['STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'LAST', 'XTND']) {
    assert.equal(AUTHORIZATION_COMMANDS[verb], undefined, verb);
  }
  assert.equal(TRANSACTION_COMMAND.tlsRequired, true);
});
