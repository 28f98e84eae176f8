/** The AUTHORIZATION command table: which verbs exist before login, and which need TLS. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AUTHORIZATION_COMMANDS,
  checkCommand,
  TRANSACTION_COMMANDS,
  TRANSACTION_EXTENSION,
  type CommandSpec,
} from '../../src/session/commands.js';
import { parseCommand } from '../../src/pop3/grammar.js';
import { Reply } from '../../src/pop3/replies.js';
import { REFUSED_AFTER_LOGIN, TRANSACTION_RULES, UNFRAMEABLE_EXTENSIONS } from '../../src/relay/policy.js';

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
  assert.deepEqual(
    Object.keys(TRANSACTION_COMMANDS).sort(),
    [...Object.keys(TRANSACTION_RULES), ...REFUSED_AFTER_LOGIN, ...UNFRAMEABLE_EXTENSIONS].sort(),
  );
  for (const [verb, rule] of Object.entries(TRANSACTION_RULES)) {
    assert.equal(TRANSACTION_COMMANDS[verb]?.args?.refusal, rule.refusal, verb);
    assert.equal(TRANSACTION_COMMANDS[verb]?.tlsRequired, true, verb);
  }
});

test('the declared checks run in order: TLS, the pending USER, the arguments', () => {
  const check = (spec: CommandSpec | undefined, text: string, secure: boolean, pendingUser?: string) => {
    const raw = Buffer.from(text, 'latin1');
    return checkCommand(spec!, parseCommand(raw)!, raw, { secure, pendingUser });
  };
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.PASS, 'PASS', false), { kind: 'reply', text: Reply.tlsRequired });
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.PASS, 'PASS', true), { kind: 'invalid', text: Reply.passWithoutUser });
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.PASS, 'PASS', true, 'alice'), { kind: 'invalid', text: Reply.badCredentialSyntax });
  assert.equal(check(AUTHORIZATION_COMMANDS.PASS, 'PASS  two words ', true, 'alice'), undefined);
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.USER, `USER ${'a'.repeat(10_000)}`, true), { kind: 'invalid', text: Reply.badCredentialSyntax });
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.STLS, 'STLS now', false), { kind: 'invalid', text: Reply.badSyntax });
  assert.deepEqual(check(AUTHORIZATION_COMMANDS.AUTH, 'AUTH PLAIN x y', true), { kind: 'invalid', text: Reply.badSyntax });
  assert.deepEqual(check(TRANSACTION_COMMANDS.RETR, 'RETR 1 2', true), { kind: 'invalid', text: TRANSACTION_RULES.RETR!.refusal });
  assert.equal(check(TRANSACTION_COMMANDS.RETR, 'RETR 1', true), undefined);
});
