import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { decodeBase64Strict } from '../../src/auth/base64.js';
import { parsePlainMessage, type PlainMessage } from '../../src/auth/sasl-plain.js';
import { Credentials } from '../../src/auth/credentials.js';
import { MAX_CREDENTIAL_FIELD_OCTETS } from '../../src/config/limits.js';

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

function ok(message: PlainMessage): { user: string; password: Buffer } {
  assert.equal(message.kind, 'ok', `expected ok, got ${message.kind}`);
  if (message.kind !== 'ok') throw new Error('unreachable');
  return message;
}

describe('decodeBase64Strict (RFC 4954 §4, R-12)', () => {
  it('decodes canonical base64, with and without padding', () => {
    assert.equal(decodeBase64Strict('dGVzdA==')?.toString('latin1'), 'test');
    assert.equal(decodeBase64Strict('dGVzdDE=')?.toString('latin1'), 'test1');
    assert.equal(decodeBase64Strict('dGVzdDEy')?.toString('latin1'), 'test12');
    assert.equal(decodeBase64Strict('AHRpbQB0YW5zdGFhZg==')?.toString('latin1'), '\0tim\0tanstaaf');
    assert.deepEqual(decodeBase64Strict('+/+/'), Buffer.from([0xfb, 0xff, 0xbf]));
  });

  it('rejects characters outside the alphabet', () => {
    for (const text of ['!!!', '!!!!', 'dGVz dA==', 'dGVzdA==\r\n', 'dGVzdA-_', 'dGVz\x00dA==', 'dGVzdA=\u00e9']) {
      assert.equal(decodeBase64Strict(text), undefined, JSON.stringify(text));
    }
  });

  it('rejects padding anywhere but the end', () => {
    for (const text of ['=AAA', 'A=AA', 'AB=C', 'dG=zdA==', 'dGVz=dA=', '====', 'dGVzdA===', 'dGVzd===']) {
      assert.equal(decodeBase64Strict(text), undefined, JSON.stringify(text));
    }
  });

  it('rejects a length that is not a multiple of four', () => {
    for (const text of ['A', 'AA', 'AAA', 'AAAAA', 'dGVzdA', 'dGVzdA=']) {
      assert.equal(decodeBase64Strict(text), undefined, JSON.stringify(text));
    }
  });

  it('round-trips any bytes Node encodes (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (raw) => {
        const data = Buffer.from(raw);
        assert.deepEqual(decodeBase64Strict(data.toString('base64')), data);
      }),
    );
  });
});

describe('parsePlainMessage (RFC 4616 §2, R-13)', () => {
  it('reads authcid and password with an empty authzid', () => {
    const message = ok(parsePlainMessage(bytes('\0tim\0tanstaaf')));
    assert.equal(message.user, 'tim');
    assert.equal(message.password.toString('latin1'), 'tanstaaf');
  });

  it('accepts an authzid equal to the authcid', () => {
    assert.equal(ok(parsePlainMessage(bytes('tim\0tim\0pw'))).user, 'tim');
  });

  it('refuses an authzid different from the authcid (no proxy authorization, R-13)', () => {
    assert.deepEqual(parsePlainMessage(bytes('victim\0mallory\0mallorypw')), { kind: 'authzid-refused' });
    assert.deepEqual(parsePlainMessage(bytes('Tim\0tim\0pw')), { kind: 'authzid-refused' });
  });

  it('rejects a missing NUL, an extra NUL, an empty authcid or an empty password', () => {
    const malformed = ['tim', 'tim\0pw', '\0tim\0pw\0', '\0tim\0p\0w', '\0\0tim\0pw', '\0\0pw', 'tim\0\0pw', '\0tim\0', '', '\0', '\0\0'];
    for (const text of malformed) {
      assert.deepEqual(parsePlainMessage(bytes(text)), { kind: 'malformed' }, JSON.stringify(text));
    }
  });

  it('accepts fields of 255 octets and rejects 256', () => {
    const max = MAX_CREDENTIAL_FIELD_OCTETS;
    assert.equal(max, 255);
    const long = 'u'.repeat(max);
    const tooLong = 'u'.repeat(max + 1);
    assert.equal(ok(parsePlainMessage(bytes(`${long}\0${long}\0${long}`))).user, long);
    assert.deepEqual(parsePlainMessage(bytes(`\0${tooLong}\0pw`)), { kind: 'malformed' });
    assert.deepEqual(parsePlainMessage(bytes(`\0tim\0${tooLong}`)), { kind: 'malformed' });
    assert.deepEqual(parsePlainMessage(bytes(`${tooLong}\0tim\0pw`)), { kind: 'malformed' });
  });

  it('keeps UTF-8 password bytes unchanged, and the username byte for byte (latin1)', () => {
    const password = Buffer.from('pässwörd €', 'utf8');
    const user = Buffer.from('jürgen', 'utf8');
    const message = ok(parsePlainMessage(Buffer.concat([Buffer.of(0), user, Buffer.of(0), password])));
    assert.ok(message.password.equals(password));
    assert.ok(bytes(message.user).equals(user));
  });
});

describe('Credentials', () => {
  it('copies the password, so wiping the caller buffer does not touch it', () => {
    const source = bytes('secret');
    const credentials = new Credentials('tim', source);
    source.fill(0);
    assert.equal(credentials.password.toString('latin1'), 'secret');
  });

  it('wipe() zeroes the password bytes and later access throws', () => {
    const credentials = new Credentials('tim', bytes('secret'));
    const held = credentials.password;
    credentials.wipe();
    assert.ok(held.every((b) => b === 0));
    assert.throws(() => credentials.password, /wiped/);
    assert.equal(credentials.user, 'tim');
  });

  it('keeps the password out of JSON.stringify and util.inspect', () => {
    const credentials = new Credentials('tim', bytes('hunter2-secret'));
    const json = JSON.stringify({ credentials });
    assert.equal(json, '{"credentials":{"user":"tim"}}');
    const shown = inspect(credentials, { depth: 5, showHidden: true });
    assert.ok(!shown.includes('hunter2'), shown);
    assert.ok(!shown.includes('68 75 6e 74'), shown); // how util.inspect would print the Buffer's bytes
  });
});
