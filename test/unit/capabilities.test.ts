import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CLIENT_SASL_MECHANISMS,
  parseCapabilities,
  postLoginCapabilities,
  preLoginCapabilities,
  UNKNOWN_CAPABILITIES,
} from '../../src/pop3/capabilities.js';

/**
 * Reads a CAPA reply the way a client does (RFC 1939 §3): status line, then lines up to the
 * first ".", unstuffing a leading dot. Fails unless the terminator is the very end of the reply.
 */
function clientReads(reply: Buffer): { status: string; capabilities: string[] } {
  const text = reply.toString('latin1');
  assert.ok(text.endsWith('\r\n.\r\n'), 'reply ends with CRLF.CRLF');
  const lines = text.split('\r\n');
  assert.equal(lines.pop(), '', 'every line ends with CRLF');
  const [status = '', ...rest] = lines;
  const terminator = rest.indexOf('.');
  assert.equal(terminator, rest.length - 1, `the first "." line is the last line: ${JSON.stringify(lines)}`);
  return { status, capabilities: rest.slice(0, -1).map((l) => (l.startsWith('.') ? l.slice(1) : l)) };
}

function names(capabilities: readonly string[]): string[] {
  return capabilities.map((c) => c.split(' ')[0]!.toUpperCase());
}

describe('preLoginCapabilities', () => {
  it('before TLS: offers STLS and no way to log in (R-07)', () => {
    const { status, capabilities } = clientReads(preLoginCapabilities(false));
    assert.match(status, /^\+OK/);
    assert.ok(capabilities.includes('STLS'));
    assert.ok(!names(capabilities).includes('USER'));
    assert.ok(!names(capabilities).includes('SASL'));
  });

  it('inside TLS: offers USER and SASL PLAIN LOGIN, and no STLS', () => {
    const { status, capabilities } = clientReads(preLoginCapabilities(true));
    assert.match(status, /^\+OK/);
    assert.ok(capabilities.includes('USER'));
    assert.ok(capabilities.includes('SASL PLAIN LOGIN'));
    assert.ok(!names(capabilities).includes('STLS'));
  });

  it('both end with ".\\r\\n" and use CRLF only', () => {
    for (const secure of [false, true]) {
      const reply = preLoginCapabilities(secure).toString('latin1');
      assert.ok(reply.endsWith('\r\n.\r\n'));
      assert.equal(reply.replace(/\r\n/g, '').includes('\n'), false);
      assert.equal(reply.replace(/\r\n/g, '').includes('\r'), false);
    }
  });

  it('advertises the mechanisms popwarden accepts from clients', () => {
    assert.deepEqual([...CLIENT_SASL_MECHANISMS], ['PLAIN', 'LOGIN']);
  });
});

describe('parseCapabilities', () => {
  it('reads STLS, USER and the SASL mechanisms, case-insensitively', () => {
    const lines = ['TOP', 'user', 'Sasl cram-md5 PLAIN', 'stls', 'UIDL'];
    const caps = parseCapabilities(lines);
    assert.equal(caps.known, true);
    assert.equal(caps.stls, true);
    assert.equal(caps.user, true);
    assert.deepEqual([...caps.sasl].sort(), ['CRAM-MD5', 'PLAIN']);
    assert.deepEqual(caps.lines, lines);
  });

  it('is not fooled by a capability that merely contains a name', () => {
    const caps = parseCapabilities(['X-STLS', 'USERS', 'X-SASL CRAM-MD5', 'IMPLEMENTATION STLS USER SASL CRAM-MD5']);
    assert.equal(caps.stls, false);
    assert.equal(caps.user, false);
    assert.equal(caps.sasl.size, 0);
  });

  it('copes with extra spaces', () => {
    const caps = parseCapabilities(['  SASL   PLAIN    LOGIN  ']);
    assert.deepEqual([...caps.sasl].sort(), ['LOGIN', 'PLAIN']);
  });

  it('gives every login that read the same list one shared object, which no caller can change (issue 10.4)', () => {
    // A logged-in session keeps its backend's capabilities while it idles: one copy per session
    // was about 0.6 KB of every idle session's memory.
    const first = parseCapabilities(['TOP', 'UIDL', 'SASL PLAIN CRAM-MD5', 'USER']);
    const second = parseCapabilities(['TOP', 'UIDL', 'SASL PLAIN CRAM-MD5', 'USER']);
    assert.equal(second, first);
    assert.notEqual(parseCapabilities(['TOP', 'UIDL', 'SASL PLAIN', 'USER']), first);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.lines));
  });

  it('knows nothing about a backend that answered -ERR', () => {
    assert.equal(UNKNOWN_CAPABILITIES.known, false);
    assert.equal(UNKNOWN_CAPABILITIES.sasl.size, 0);
  });
});

describe('postLoginCapabilities (R-07, S-08)', () => {
  const backend = parseCapabilities([
    'TOP',
    'UIDL',
    'EXPIRE NEVER',
    'LOGIN-DELAY 900',
    'PIPELINING',
    'USER',
    'SASL CRAM-MD5 PLAIN',
    'STLS',
    'IMPLEMENTATION Dovecot 2.3',
    'RESP-CODES',
    'AUTH-RESP-CODE',
    'X-EVIL \x1b[31mred',
  ]);

  it("keeps the backend's extensions", () => {
    const { capabilities } = clientReads(postLoginCapabilities(backend));
    for (const kept of ['TOP', 'UIDL', 'EXPIRE NEVER', 'LOGIN-DELAY 900', 'PIPELINING']) {
      assert.ok(capabilities.includes(kept), kept);
    }
  });

  it("drops the backend's USER, SASL, STLS and IMPLEMENTATION lines and adds popwarden's", () => {
    const { capabilities } = clientReads(postLoginCapabilities(backend));
    assert.ok(!capabilities.includes('SASL CRAM-MD5 PLAIN'));
    assert.ok(!names(capabilities).includes('STLS'));
    assert.ok(!names(capabilities).includes('IMPLEMENTATION'));
    assert.deepEqual(
      capabilities.filter((c) => ['USER', 'SASL', 'RESP-CODES', 'AUTH-RESP-CODE'].includes(names([c])[0]!)),
      ['RESP-CODES', 'AUTH-RESP-CODE', 'USER', 'SASL PLAIN LOGIN'],
    );
  });

  it('drops lines with control bytes (a terminal escape, S-08)', () => {
    const reply = postLoginCapabilities(backend).toString('latin1');
    assert.ok(!reply.includes('\x1b'));
    assert.ok(!reply.includes('X-EVIL'));
    const withOthers = postLoginCapabilities(parseCapabilities(['X-A\x00', 'X-B\x7f', 'X-C\tx', '\xffX', 'TOP']));
    assert.deepEqual(clientReads(withOthers).capabilities.slice(0, 1), ['TOP']);
    assert.ok(!/[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\xff]/.test(withOthers.toString('latin1')));
  });

  it("gives popwarden's lines to a backend without CAPA", () => {
    const { capabilities } = clientReads(postLoginCapabilities(UNKNOWN_CAPABILITIES));
    assert.deepEqual(capabilities, ['RESP-CODES', 'AUTH-RESP-CODE', 'USER', 'SASL PLAIN LOGIN']);
  });

  it('never ends the reply early: a backend line "." (sent stuffed as "..") stays inside the list', () => {
    // relay.ts unstuffs "..\r\n" to "." before parseCapabilities; written back unstuffed it would
    // be read by the client as the end of CAPA, and "TOP\r\n...\r\n.\r\n" as stray replies (D-05 class).
    for (const line of ['.', '.X-DOT', '..']) {
      const reply = postLoginCapabilities(parseCapabilities(['UIDL', line, 'TOP']));
      const { capabilities } = clientReads(reply);
      assert.ok(capabilities.includes('TOP'), `${JSON.stringify(line)}: TOP must survive`);
      assert.ok(capabilities.includes(line), `${JSON.stringify(line)}: the client must read the line back unchanged`);
    }
  });

  it('never advertises STLS and always has exactly one USER and one SASL line (fast-check)', () => {
    const capabilityLine = fc.oneof(
      fc.constantFrom('.', '..', '.STLS', 'STLS', 'stls', 'Stls x', 'USER', 'user', 'SASL PLAIN', 'sasl cram-md5', 'IMPLEMENTATION x', 'TOP', 'UIDL', 'X-STLS'),
      fc.string({ unit: 'binary-ascii', maxLength: 30 }).filter((s) => !s.includes('\n') && !s.includes('\r')),
    );
    fc.assert(
      fc.property(fc.array(capabilityLine, { maxLength: 20 }), (lines) => {
        const reply = postLoginCapabilities(parseCapabilities(lines));
        const { capabilities } = clientReads(reply);
        const ns = names(capabilities.map((c) => c.trim()));
        assert.ok(!ns.includes('STLS'), JSON.stringify(capabilities));
        assert.equal(ns.filter((n) => n === 'USER').length, 1);
        assert.equal(ns.filter((n) => n === 'SASL').length, 1);
        assert.ok(!/[\x00-\x1f\x7f]/.test(capabilities.join('')));
      }),
      { numRuns: 500 },
    );
  });
});
