/**
 * CAPA parsing and rewriting (pop3/capabilities.ts): any backend lines are read as a reference
 * reads RFC 2449's "name params" lines, and the list popwarden sends on is always a well-framed
 * multi-line reply (its terminator exactly at its end), printable, with the authentication and
 * TLS lines popwarden's own.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCapabilities, postLoginCapabilities } from '../../../src/pop3/capabilities.js';
import { TerminatorScanner } from '../../../src/net/multiline.js';
import { randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';

/** The reference: the first whitespace-separated word names the capability; SASL lists mechanisms. */
function referenceParse(lines: readonly string[]): { stls: boolean; user: boolean; sasl: string[] } {
  const words = (line: string): string[] => {
    const out: string[] = [];
    let word = '';
    for (const ch of line) {
      if (/\s/.test(ch)) {
        if (word !== '') out.push(word);
        word = '';
      } else word += ch;
    }
    if (word !== '') out.push(word);
    return out;
  };
  const parsed = lines.map(words);
  const named = (name: string) => parsed.filter((w) => w[0]?.toUpperCase() === name);
  return {
    stls: named('STLS').length > 0,
    user: named('USER').length > 0,
    sasl: [...new Set(named('SASL').flatMap((w) => w.slice(1).map((m) => m.toUpperCase())))].sort(),
  };
}

const OWNED = ['USER', 'SASL', 'STLS', 'IMPLEMENTATION', 'RESP-CODES', 'AUTH-RESP-CODE'];
const capabilityLine = fc.oneof(
  fc.mixedCase(fc.constantFrom('STLS', 'USER', 'SASL PLAIN LOGIN', ' sasl  cram-md5\t', 'TOP', 'UIDL', 'PIPELINING', 'IMPLEMENTATION x', '.', '..', '.TOP', 'EXPIRE NEVER', 'LOGIN-DELAY 900')),
  fc.array(fc.constantFrom('SASL', 'USER', ' ', '\t', '\xa0', '\r', '\0', '\x1b', '.', 'X'), { maxLength: 8 }).map((p) => p.join('')),
  randomBytes(210).map((b) => b.toString('latin1').replaceAll('\n', '')),
);

export default defineTarget({
  name: 'capabilities',
  about: 'backend CAPA lines: parse vs a reference; the rewritten list is framed, printable, ours',
  input: fc.array(capabilityLine, { maxLength: 70 }),
  check(lines) {
    const parsed = parseCapabilities(lines);
    const expected = referenceParse(lines);
    assert.deepEqual({ stls: parsed.stls, user: parsed.user, sasl: [...parsed.sasl].sort() }, expected);

    const reply = postLoginCapabilities(parsed);
    const text = reply.toString('latin1');
    assert.ok(text.startsWith('+OK ') && text.endsWith('\r\n.\r\n'), 'not a multi-line reply');
    const statusEnd = text.indexOf('\r\n') + 2;
    assert.equal(new TerminatorScanner().feed(reply.subarray(statusEnd)), reply.length - statusEnd, 'the reply ends before its end');
    const body = text.slice(statusEnd, -3).split('\r\n').slice(0, -1);
    for (const line of body) assert.match(line, /^[\x21-\x7e][\x20-\x7e]*$/, 'a capability line a client should not see');
    const unstuffed = body.map((l) => (l.startsWith('.') ? l.slice(1) : l));
    const tail = unstuffed.slice(-4);
    assert.deepEqual(tail, ['RESP-CODES', 'AUTH-RESP-CODE', 'USER', 'SASL PLAIN LOGIN']);
    for (const line of unstuffed.slice(0, -4)) {
      assert.ok(!OWNED.includes(line.trim().split(/\s+/)[0]!.toUpperCase()), `the backend's ${line} went through`);
      assert.ok(lines.includes(line), `${line} is not one of the backend's lines`);
    }
  },
});
