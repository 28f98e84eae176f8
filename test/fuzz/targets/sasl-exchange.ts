/**
 * The AUTH PLAIN / AUTH LOGIN exchange (session/handlers/sasl.ts) driven with any initial line
 * and any continuation lines: it ends in a refusal, a cancel or a login, never throws, reads at
 * most two continuations, wipes each, and a login it starts carries only credentials that may
 * travel to a backend (no control byte in the user, no NUL/CR/LF in the password, 255 octets).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { auth } from '../../../src/session/handlers/sasl.js';
import { AUTHORIZATION_COMMANDS, checkCommand } from '../../../src/session/commands.js';
import { parseCommand } from '../../../src/pop3/grammar.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../../../src/config/limits.js';
import type { SessionContext } from '../../../src/session/context.js';
import { byteStream } from '../inputs.js';
import { defineTarget } from '../target.js';

const b64 = (text: string) => Buffer.from(text, 'latin1').toString('base64');
const credential = fc.oneof(fc.constantFrom('alice', 'a b', '', 'x\r\ny', 'x\0', '\x1b[2J', 'é'), fc.string({ maxLength: 300 }));
const response = fc.oneof(
  credential.map(b64),
  fc.tuple(credential, credential, credential).map(([z, u, p]) => b64(`${z}\0${u}\0${p}`)),
  fc.constantFrom('*', '=', '', '!!!!', 'QQ', 'QQ=', 'AGFsaWNlAHNlY3JldA=='),
);
const continuation = fc.oneof(
  { weight: 4, arbitrary: response.map((t) => Buffer.from(t, 'latin1')) },
  { weight: 1, arbitrary: byteStream(['=', '*', 'A'], 8, 6) },
  { weight: 1, arbitrary: fc.constantFrom('too-long' as const, 'closed' as const) },
);
const firstLine = fc
  .tuple(fc.mixedCase(fc.constantFrom('AUTH PLAIN', 'AUTH LOGIN', 'AUTH', 'AUTH CRAM-MD5', 'AUTH PLAIN X')), fc.option(response, { nil: undefined }))
  .map(([head, initial]) => Buffer.from(initial === undefined ? head : `${head} ${initial}`, 'latin1'));

export default defineTarget({
  name: 'sasl-exchange',
  about: 'AUTH PLAIN/LOGIN exchanges with any lines: clean outcome, wiped lines, safe credentials',
  input: fc.record({ first: firstLine, continuations: fc.array(continuation, { maxLength: 3 }) }),
  async check({ first, continuations }) {
    const command = parseCommand(first);
    if (command === undefined || checkCommand(AUTHORIZATION_COMMANDS['AUTH']!, command, first, { secure: true, pendingUser: undefined }) !== undefined) return;
    const lines = continuations.map((c) => (Buffer.isBuffer(c) ? Buffer.from(c) : c));
    let read = 0;
    const context = {
      secure: true,
      write: () => undefined,
      readContinuation: () => Promise.resolve(lines[read++] ?? 'closed'),
    } as unknown as SessionContext;
    const outcome = await auth(command, context);
    assert.ok(read <= 2, `read ${read} continuation lines`);
    for (const line of lines.slice(0, read)) {
      if (Buffer.isBuffer(line)) assert.ok(line.every((b) => b === 0), 'a continuation line was not wiped');
    }
    assert.ok(['reply', 'replied', 'invalid', 'close', 'logIn'].includes(outcome.kind), `outcome ${outcome.kind}`);
    if (outcome.kind !== 'logIn') return;
    const user = Buffer.from(outcome.credentials.user, 'latin1');
    const password = outcome.credentials.password;
    assert.ok(user.length > 0 && user.length <= MAX_CREDENTIAL_FIELD_OCTETS && user.every((b) => b >= 0x20 && b !== 0x7f), 'unsafe user');
    assert.ok(password.length > 0 && password.length <= MAX_CREDENTIAL_FIELD_OCTETS && !password.some((b) => b === 0 || b === 0x0a || b === 0x0d), 'unsafe password');
  },
});
