/**
 * The SASL decoders (auth/base64.ts, auth/sasl-plain.ts): strict base64 accepts exactly the RFC
 * 4648 alphabet with padding at the end and round-trips every byte string; a PLAIN message is
 * split as a reference reads RFC 4616 §2, and nothing a client sends makes either throw.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeBase64Strict } from '../../../src/auth/base64.js';
import { parsePlainMessage } from '../../../src/auth/sasl-plain.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../../../src/config/limits.js';
import { byteStream, randomBytes } from '../inputs.js';
import { defineTarget } from '../target.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** RFC 4648 §4 by hand: groups of four alphabet characters, "=" only to pad the last group. */
function referenceIsBase64(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const body = text.slice(0, text.length - padding);
  return [...body].every((c) => ALPHABET.includes(c));
}

type Plain = { kind: 'ok'; user: string; password: string } | { kind: 'malformed' } | { kind: 'authzid-refused' };

/** RFC 4616 §2 with popwarden's rules on what may travel to a backend, read field by field. */
function referencePlain(message: Buffer): Plain {
  const fields: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= message.length; i++) {
    if (i === message.length || message[i] === 0) {
      fields.push(message.subarray(start, i));
      start = i + 1;
    }
  }
  if (fields.length !== 3) return { kind: 'malformed' };
  const [authzid, authcid, password] = fields as [Buffer, Buffer, Buffer];
  const fits = (b: Buffer) => b.length <= MAX_CREDENTIAL_FIELD_OCTETS;
  const userOk = authcid.length > 0 && fits(authcid) && authcid.every((b) => b >= 0x20 && b !== 0x7f);
  const passwordOk = password.length > 0 && fits(password) && !password.includes(0x0d) && !password.includes(0x0a);
  if (!userOk || !passwordOk || !fits(authzid)) return { kind: 'malformed' };
  if (authzid.length > 0 && !authzid.equals(authcid)) return { kind: 'authzid-refused' };
  return { kind: 'ok', user: authcid.toString('latin1'), password: password.toString('latin1') };
}

const plainMessage = fc.oneof(
  byteStream(['\0', 'alice', 'bob', '\r', '\n', '\x7f', ' '], MAX_CREDENTIAL_FIELD_OCTETS, 8),
  fc.tuple(randomBytes(300), randomBytes(300), randomBytes(300)).map(([a, b, c]) => Buffer.concat([a, Buffer.of(0), b, Buffer.of(0), c])),
);
const base64Text = fc.oneof(
  plainMessage.map((m) => m.toString('base64')),
  fc.string({ unit: fc.constantFrom(...ALPHABET, '=', ' ', '-', '_', '\r', '*', 'é'), maxLength: 24 }),
  plainMessage.map((m) => m.toString('base64')).chain((t) => fc.nat().map((i) => (t.length === 0 ? '=' : `${t.slice(0, i % t.length)}=${t.slice(i % t.length)}`))),
);

export default defineTarget({
  name: 'sasl',
  about: 'SASL PLAIN/LOGIN decoders: strict base64 and the PLAIN split vs references, round-trips',
  input: fc.record({ message: plainMessage, text: base64Text }),
  check({ message, text }) {
    // Every byte string survives encode/decode.
    assert.deepEqual(decodeBase64Strict(message.toString('base64')), message);
    const decoded = decodeBase64Strict(text);
    assert.equal(decoded !== undefined, referenceIsBase64(text), `strict base64 of ${JSON.stringify(text)}`);
    for (const candidate of decoded === undefined ? [message] : [message, decoded]) {
      const parsed = parsePlainMessage(candidate);
      const shown: Plain = parsed.kind === 'ok' ? { kind: 'ok', user: parsed.user, password: parsed.password.toString('latin1') } : parsed;
      assert.deepEqual(shown, referencePlain(candidate));
    }
  },
});
