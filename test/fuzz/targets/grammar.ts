/**
 * The command grammar (pop3/grammar.ts) and the argument checks the command table runs before a
 * handler (session/commands.ts, relay/policy.ts): any line parses or is refused as a byte-wise
 * reference says, nothing throws, and a line relayed to the backend is one clean line that
 * popwarden frames the same way the backend will read it.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isMessageNumber, parseCommand, type Command } from '../../../src/pop3/grammar.js';
import { AUTHORIZATION_COMMANDS, TRANSACTION_COMMANDS, checkCommand } from '../../../src/session/commands.js';
import { hasMultilineReply, planRelay, relayLine, TRANSACTION_RULES } from '../../../src/relay/policy.js';
import { MAX_CREDENTIAL_FIELD_OCTETS, MAX_SASL_LINE_OCTETS } from '../../../src/config/limits.js';
import { randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';

/** The reference parser: written byte by byte, without the regular expressions of the real one. */
function referenceParse(line: Buffer): Command | undefined {
  if (line.some((b) => b < 0x20 || b === 0x7f)) return undefined;
  let space = line.indexOf(0x20);
  if (space === -1) space = line.length;
  if (space < 1 || space > 40) return undefined;
  for (let i = 0; i < space; i++) {
    const lower = line[i]! | 0x20;
    if (lower < 0x61 || lower > 0x7a) return undefined;
  }
  const rest = space === line.length ? '' : line.subarray(space + 1).toString('latin1');
  const args: string[] = [];
  for (const token of rest.split(' ')) if (token.length > 0) args.push(token);
  return { verb: line.subarray(0, space).toString('latin1').toUpperCase(), rest, args };
}

/** A message number by arithmetic on big integers: digits only, no leading zero, 1..2^31-1. */
function referenceMessageNumber(token: string): boolean {
  if (!/^[0-9]+$/.test(token) || token.startsWith('0')) return false;
  const n = BigInt(token);
  return n >= 1n && n <= 2n ** 31n - 1n;
}

const verbs = [...Object.keys(TRANSACTION_RULES), ...Object.keys(AUTHORIZATION_COMMANDS), 'XTND', 'LAST', 'RETR', 'A'.repeat(40), 'A'.repeat(41)];
const numbers = ['0', '1', '01', '+1', '-1', '1e3', '2147483647', '2147483648', '4294967297', '99999999999', '١', ' ', ''];
const word = fc.oneof(
  fc.constantFrom(...verbs).chain((v) => fc.mixedCase(fc.constant(v))),
  fc.constantFrom(...numbers),
  fc.string({ maxLength: 6 }),
  randomBytes(4).map((b) => b.toString('latin1')),
);
const line = fc.oneof(
  { weight: 4, arbitrary: fc.array(word, { maxLength: 5 }).chain((words) => fc.constantFrom(' ', '  ', '\t').map((sep) => words.join(sep))).map((t) => Buffer.from(t, 'latin1')) },
  { weight: 1, arbitrary: randomBytes(MAX_SASL_LINE_OCTETS) },
);

export default defineTarget({
  name: 'grammar',
  about: 'command grammar and the argument checks before a handler, vs a byte-wise reference',
  input: fc.record({ line, secure: fc.boolean(), pendingUser: fc.option(fc.constant('alice'), { nil: undefined }) }),
  check({ line: raw, secure, pendingUser }) {
    const command = parseCommand(raw);
    assert.deepEqual(command, referenceParse(raw));
    for (const token of command?.args ?? []) assert.equal(isMessageNumber(token), referenceMessageNumber(token), `isMessageNumber(${token})`);
    if (command === undefined) return;

    const situation = { secure, pendingUser };
    const authorization = AUTHORIZATION_COMMANDS[command.verb];
    if (authorization !== undefined) {
      const refusal = checkCommand(authorization, command, raw, situation);
      if ((command.verb === 'USER' || command.verb === 'PASS') && refusal === undefined) {
        const field = command.verb === 'USER' ? Buffer.from(command.rest, 'latin1') : raw.subarray(5);
        assert.ok(field.length > 0 && field.length <= MAX_CREDENTIAL_FIELD_OCTETS, `${command.verb} field of ${field.length} octets accepted`);
      }
    }

    const transaction = TRANSACTION_COMMANDS[command.verb];
    const refused = transaction !== undefined && checkCommand(transaction, command, raw, { secure: true, pendingUser: undefined }) !== undefined;
    const plan = planRelay(command, raw);
    assert.equal(plan.kind === 'refuse', refused && TRANSACTION_RULES[command.verb] !== undefined, 'the command table and the relay policy disagree');
    if (refused) return;
    // What reaches the backend: one line, no CR/LF/NUL, read by a parser exactly as popwarden read it.
    const outgoing = relayLine(command, raw);
    assert.ok(!outgoing.includes(0x0d) && !outgoing.includes(0x0a) && !outgoing.includes(0x00), 'a relayed line carries a line break');
    const reread = parseCommand(outgoing);
    assert.ok(reread !== undefined, 'a relayed line does not parse');
    assert.equal(reread.verb, command.verb);
    assert.deepEqual(reread.args, command.args);
    assert.equal(hasMultilineReply(reread), hasMultilineReply(command), 'the backend would frame the reply differently');
  },
});
