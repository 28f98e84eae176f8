/** The AUTHORIZATION command table: which verbs exist before login, and which need TLS. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTHORIZATION_COMMANDS, TRANSACTION_COMMANDS, TRANSACTION_EXTENSION } from '../../src/session/commands.js';
import { REFUSED_AFTER_LOGIN, TRANSACTION_RULES } from '../../src/relay/policy.js';

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
  assert.equal(TRANSACTION_EXTENSION.tlsRequired, true);
});

test('after login, the table names every verb popwarden checks itself before relaying', () => {
  assert.deepEqual(Object.keys(TRANSACTION_COMMANDS).sort(), [...Object.keys(TRANSACTION_RULES), ...REFUSED_AFTER_LOGIN].sort());
  for (const [verb, rule] of Object.entries(TRANSACTION_RULES)) {
    assert.equal(TRANSACTION_COMMANDS[verb]?.args?.refusal, rule.refusal, verb);
    assert.equal(TRANSACTION_COMMANDS[verb]?.tlsRequired, true, verb);
  }
});
