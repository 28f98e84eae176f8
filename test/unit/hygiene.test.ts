import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { detectForeignProtocol } from '../../src/net/hygiene.js';
import { isLoopbackAddress, normaliseAddress } from '../../src/net/addresses.js';
import { escapeForLog } from '../../src/observability/log.js';

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** The start of a TLS 1.2/1.3 ClientHello record as clients send it: handshake (0x16), version 3.1, length, ClientHello (0x01). */
const CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...new Array<number>(32).fill(0xab)]);

describe('detectForeignProtocol (X-05)', () => {
  it('recognises a TLS ClientHello sent to the plaintext port', () => {
    assert.equal(detectForeignProtocol(CLIENT_HELLO), 'tls');
    assert.equal(detectForeignProtocol(Buffer.from([0x16, 0x03, 0x03, 0x00, 0x10])), 'tls');
  });

  it('recognises an HTTP request line', () => {
    assert.equal(detectForeignProtocol(bytes('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'http');
    assert.equal(detectForeignProtocol(bytes('POST /login HTTP/1.0\r\n')), 'http');
    assert.equal(detectForeignProtocol(bytes('CONNECT mail.test:110 HTTP/1.1\r\n')), 'http');
  });

  it('leaves POP3 commands alone', () => {
    for (const text of ['CAPA\r\n', 'USER GET\r\n', 'STLS\r\n', 'GET\r\n', 'get', '\x16', '']) {
      assert.equal(detectForeignProtocol(bytes(text)), undefined, JSON.stringify(text));
    }
  });

  it('does not take a handshake byte without the TLS major version for TLS', () => {
    assert.equal(detectForeignProtocol(Buffer.from([0x16, 0x02, 0x00])), undefined);
  });
});

describe('isLoopbackAddress', () => {
  it('is true for 127.0.0.0/8, ::1 and the IPv4-mapped forms', () => {
    for (const address of ['127.0.0.1', '127.5.6.7', '127.255.255.255', '::1', '::ffff:127.0.0.1', '::FFFF:127.0.0.2', '0:0:0:0:0:0:0:1']) {
      assert.equal(isLoopbackAddress(address), true, address);
    }
  });

  it('is false for everything else', () => {
    for (const address of ['10.0.0.1', '::2', '2001:db8::1', '128.0.0.1', '1.127.0.0', '::ffff:10.0.0.1', '::', '0.0.0.0', 'localhost', '', '127.0.0.1.evil', '::11', '1::1']) {
      assert.equal(isLoopbackAddress(address), false, address);
    }
  });

  it('normalises IPv4-mapped IPv6 to the IPv4 form and leaves other addresses alone', () => {
    assert.equal(normaliseAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseAddress('192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseAddress('2001:db8::1'), '2001:db8::1');
  });
});

describe('escapeForLog (A-09)', () => {
  const RAW_UNSAFE = /[^\x20-\x7e]/;

  it('escapes CR and LF so a username cannot forge a log line', () => {
    const out = escapeForLog('a\r\nFAKE LOG');
    assert.equal(out, 'a\\x0d\\x0aFAKE LOG');
    assert.ok(!RAW_UNSAFE.test(out));
  });

  it('leaves format directives as inert text', () => {
    assert.equal(escapeForLog('%s%n'), '%s%n');
  });

  it('escapes a terminal escape sequence', () => {
    const out = escapeForLog('\x1b[2J');
    assert.equal(out, '\\x1b[2J');
    assert.ok(!out.includes('\x1b'));
  });

  it('escapes NUL, DEL, non-ASCII bytes and a Buffer the same way', () => {
    assert.equal(escapeForLog(bytes('\x00\x7f\xff')), '\\x00\\x7f\\xff');
    assert.ok(!RAW_UNSAFE.test(escapeForLog('\u2028\u2029é')));
  });

  it('escapes the backslash, so escaped and literal text cannot be confused', () => {
    assert.equal(escapeForLog('a\\x0d'), 'a\\\\x0d');
    assert.notEqual(escapeForLog('a\\x0d'), escapeForLog('a\r'));
  });

  it('truncates long input and marks it', () => {
    const out = escapeForLog('a'.repeat(10_000));
    assert.equal(out, `${'a'.repeat(256)}...`);
    assert.equal(escapeForLog('b'.repeat(20), 8), 'bbbbbbbb...');
    assert.equal(escapeForLog('c'.repeat(256)), 'c'.repeat(256));
  });

  it('marks the truncation also when escapes, not the input length, hit the bound', () => {
    // 100 characters (under the 256 bound) that escape to 400: the output stops after 64 of them.
    const input = `${'\x01'.repeat(99)}Z`;
    const out = escapeForLog(input);
    assert.ok(out.endsWith('...'), `output hides the cut: ...${out.slice(-12)} (${out.length} chars)`);
    assert.ok(!out.includes('Z'));
    // And an input that fits is not marked, however much it expands.
    assert.equal(escapeForLog('\x01'.repeat(64)), '\\x01'.repeat(64));
  });

  it('never outputs a raw control or non-ASCII character, and stays bounded (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 600 }), fc.integer({ min: 1, max: 300 }), (text, max) => {
        const out = escapeForLog(text, max);
        assert.ok(!RAW_UNSAFE.test(out), JSON.stringify(out));
        assert.ok(out.length <= max + 5 + 3, `${out.length} > ${max} + 8`);
      }),
      { numRuns: 500 },
    );
  });
});
