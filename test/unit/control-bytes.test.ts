/**
 * The one control-byte rule (pop3/control-bytes.ts) that command lines, usernames, status lines
 * for clients and log lines share: 0x00-0x1f and 0x7f, and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasControlBytes, isControlByte, withoutControlBytes } from '../../src/pop3/control-bytes.js';

test('exactly the C0 controls and DEL are control bytes', () => {
  const control = [];
  for (let code = 0; code < 256; code++) if (isControlByte(code)) control.push(code);
  assert.deepEqual(control, [...Array.from({ length: 32 }, (_, i) => i), 0x7f]);
});

test('hasControlBytes looks at every byte, Latin-1 and UTF-8 bytes are not controls', () => {
  assert.equal(hasControlBytes(Buffer.from('+OK fine')), false);
  assert.equal(hasControlBytes(Buffer.from('Grüße', 'utf8')), false);
  assert.equal(hasControlBytes(Buffer.from([0xa0, 0xff, 0x80])), false);
  assert.equal(hasControlBytes(Buffer.from('+OK a\tb')), true);
  assert.equal(hasControlBytes(Buffer.from('last\x7f')), true);
  assert.equal(hasControlBytes(Buffer.from('\x00first')), true);
});

test('withoutControlBytes drops them and keeps the rest byte for byte', () => {
  assert.deepEqual(withoutControlBytes(Buffer.from('+OK \x1b[2Jhi\r\x00\x7f!')), Buffer.from('+OK [2Jhi!'));
  assert.deepEqual(withoutControlBytes(Buffer.from([0x2b, 0x01, 0xe9, 0x1f])), Buffer.from([0x2b, 0xe9]));
  const clean = Buffer.from('+OK clean');
  assert.equal(withoutControlBytes(clean), clean);
});
