import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { apopDigest, findApopTimestamp } from '../../src/auth/apop.js';
import { cramMd5Response } from '../../src/auth/cram-md5.js';
import { MAX_APOP_TIMESTAMP_OCTETS } from '../../src/config/limits.js';

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

describe('apopDigest (RFC 1939 §7)', () => {
  it("matches the RFC's example", () => {
    assert.equal(apopDigest('<1896.697170952@dbc.mtview.ca.us>', bytes('tanstaaf')), 'c4c9334bac560ecc979e58001b3e22fb');
  });

  it('is 32 lower-case hex digits and depends on both inputs', () => {
    const digest = apopDigest('<1.2@x>', bytes('pw'));
    assert.match(digest, /^[0-9a-f]{32}$/);
    assert.notEqual(apopDigest('<1.3@x>', bytes('pw')), digest);
    assert.notEqual(apopDigest('<1.2@x>', bytes('pW')), digest);
  });

  it('uses the UTF-8 password bytes unchanged (R-13)', () => {
    const password = Buffer.from('pässwörd', 'utf8');
    const expected = createHash('md5').update(Buffer.concat([bytes('<1.2@x>'), password])).digest('hex');
    assert.equal(apopDigest('<1.2@x>', password), expected);
  });
});

describe('cramMd5Response (RFC 2195 §2)', () => {
  it("matches the RFC's example", () => {
    const response = cramMd5Response('tim', bytes('tanstaaftanstaaf'), bytes('<1896.697170952@postoffice.reston.mci.net>'));
    assert.equal(Buffer.from(response, 'base64').toString('latin1'), 'tim b913a602c7eda7a495b4e6e7334d3890');
    assert.equal(response, 'dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw');
  });

  it('keys the HMAC with the password bytes, not a re-encoded string', () => {
    const a = cramMd5Response('u', Buffer.from('ü', 'utf8'), bytes('<1@x>'));
    const b = cramMd5Response('u', Buffer.from('ü', 'latin1'), bytes('<1@x>'));
    assert.notEqual(a, b);
  });
});

describe('findApopTimestamp', () => {
  it("finds the RFC's timestamp in a greeting", () => {
    assert.equal(findApopTimestamp('POP3 server ready <1896.697170952@dbc.mtview.ca.us>'), '<1896.697170952@dbc.mtview.ca.us>');
  });

  it("finds a Dovecot-style timestamp (base64 with '+' and '=')", () => {
    const ts = '<699a.d.6b05deb8.+F+wwuHJf7wBEiIBwJugRg==@vm>';
    assert.equal(findApopTimestamp(`Dovecot ready. ${ts}`), ts);
  });

  it('returns undefined for a greeting without a timestamp', () => {
    assert.equal(findApopTimestamp('POP3 server ready'), undefined);
    assert.equal(findApopTimestamp(''), undefined);
  });

  it(`accepts ${MAX_APOP_TIMESTAMP_OCTETS} octets and refuses one more`, () => {
    const at = (n: number): string => `<${'a'.repeat(n - 4)}@b>`;
    assert.equal(at(MAX_APOP_TIMESTAMP_OCTETS).length, MAX_APOP_TIMESTAMP_OCTETS);
    assert.equal(findApopTimestamp(`ready ${at(MAX_APOP_TIMESTAMP_OCTETS)}`), at(MAX_APOP_TIMESTAMP_OCTETS));
    assert.equal(findApopTimestamp(`ready ${at(MAX_APOP_TIMESTAMP_OCTETS + 1)}`), undefined);
  });

  describe('refuses hostile challenges (B-03, CVE-2007-1558)', () => {
    const hostile: ReadonlyArray<readonly [string, string]> = [
      ['non-ASCII bytes', 'ready <\xc3\xbf\xc3\xbf@x>'],
      ['a non-ASCII byte among ASCII', 'ready <12\xff34@x>'],
      ['no at sign', 'ready <no-at-sign>'],
      ['600 octets', `ready <${'1'.repeat(300)}@${'x'.repeat(295)}>`],
      ['two timestamps', 'ready <1.2@x> <3.4@y>'],
      ['two identical timestamps', 'ready <1.2@x> <1.2@x>'],
      ['a space inside', 'ready <1896 697@x>'],
      ['a space before the at sign', 'ready <1896.697 @x>'],
      ['nested <', 'ready <<1.2@x>'],
      ['< inside', 'ready <1.<2@x>'],
      ['two at signs', 'ready <a@b@c>'],
      ['a control byte inside', 'ready <1.\x002@x>'],
      ['a DEL inside', 'ready <1.\x7f2@x>'],
      ['empty local part', 'ready <@x>'],
      ['empty domain', 'ready <1.2@>'],
      ['unclosed', 'ready <1.2@x'],
    ];
    for (const [name, greeting] of hostile) {
      it(name, () => {
        assert.equal(findApopTimestamp(greeting), undefined);
      });
    }
  });

  it('returns only printable ASCII of the form <x@y>, bounded, or nothing (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom('<', '>', '@', ' ', '.', '\xff', 'a'), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 40 }),
        (parts) => {
          const found = findApopTimestamp(parts.join(''));
          if (found === undefined) return;
          assert.match(found, /^<[\x21-\x3b\x3d\x3f\x41-\x7e]+@[\x21-\x3b\x3d\x3f\x41-\x7e]+>$/);
          assert.ok(found.length <= MAX_APOP_TIMESTAMP_OCTETS);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
