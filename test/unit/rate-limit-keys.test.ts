/** Key derivation, CIDR lists, the password fingerprint, the decision and the connection gate. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { attemptKeys, canonicalUser } from '../../src/auth/rate-limit/keys.js';
import { ipKey } from '../../src/net/addresses.js';
import { CidrList } from '../../src/net/cidr.js';
import { loadHmacKey, passwordTag } from '../../src/auth/rate-limit/hmac.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { scratchDir } from '../harness/scratch.js';

const SOLID = { lowerCase: true, realmSeparators: '@%', pattern: undefined };
const KEYS = { usernameCanonical: SOLID, ipv6PrefixLength: 64 };

describe('rate-limit keys', () => {
  it('keys IPv6 clients by their /64 (A-07)', () => {
    assert.equal(ipKey('2001:db8:1:2::a', 64), '2001:db8:1:2::/64');
    assert.equal(ipKey('2001:db8:1:2::b', 64), ipKey('2001:db8:1:2:ffff:1:2:3', 64));
    assert.notEqual(ipKey('2001:db8:1:2::a', 64), ipKey('2001:db8:1:3::a', 64));
    assert.equal(ipKey('2001:DB8:0:0:1::1', 48), '2001:db8::/48');
    assert.equal(ipKey('2001:db8:1:2:3:4:5:6', 56), '2001:db8:1::/56');
    assert.equal(ipKey('::1', 64), '::/64');
  });

  it('keys IPv4-mapped IPv6 as IPv4, in every spelling', () => {
    assert.equal(ipKey('::ffff:192.0.2.7', 64), '192.0.2.7');
    assert.equal(ipKey('::ffff:c000:207', 64), '192.0.2.7');
    assert.equal(ipKey('192.0.2.7', 64), '192.0.2.7');
  });

  it('keys a client behind a NAT64/SIIT translator by the IPv4 address it carries (RFC 6052 well-known prefix)', () => {
    // Every IPv4 client a translator forwards arrives as 64:ff9b::/96 + its address, one /64:
    // keyed by that /64, one of them would spend the failure and connection bounds of all.
    assert.equal(ipKey('64:ff9b::192.0.2.7', 64), '192.0.2.7');
    assert.equal(ipKey('64:ff9b::c000:207', 64), '192.0.2.7');
    assert.notEqual(ipKey('64:ff9b::192.0.2.7', 64), ipKey('64:ff9b::198.51.100.1', 64));
    assert.equal(ipKey('64:ff9b:0:0:1::1', 64), '64:ff9b::/64', 'outside the /96 it is an IPv6 address like any other');
  });

  it('keys every spelling of one account on its canonical name (issue 9.1)', () => {
    assert.equal(canonicalUser('  Alice ', SOLID), 'alice');
    assert.equal(canonicalUser('alice@v0', SOLID), 'alice');
    assert.equal(canonicalUser('ALICE%final', SOLID), 'alice');
    assert.equal(canonicalUser('alice%a@b', SOLID), 'alice', 'cut at the first separator');
    const exact = { lowerCase: false, realmSeparators: '', pattern: undefined };
    assert.equal(canonicalUser('  Alice@Example.COM ', exact), 'Alice@Example.COM', 'trimmed, nothing else');
    const dovecotDomain = { lowerCase: true, realmSeparators: '@', pattern: undefined };
    assert.equal(canonicalUser('alice%x', dovecotDomain), 'alice%x');
    const pattern = { lowerCase: true, realmSeparators: '', pattern: '^(?:[a-z]+\\\\)?([^@]+)' };
    assert.equal(canonicalUser('CORP\\Alice@x', pattern), 'alice', 'the capture of the pattern');
    assert.equal(canonicalUser('@alice', { ...pattern, pattern: '^([a-z]+)$' }), '@alice', 'no match: the whole name');
    assert.equal(attemptKeys('ALICE@v3', '::ffff:127.0.0.2', KEYS).pair, attemptKeys('alice ', '127.0.0.2', KEYS).pair);
    assert.equal(attemptKeys('Alice%v4', '127.0.0.2', KEYS).userId, 'alice');
  });

  it('percent-encodes users so no typed character forges a separator or a hash tag', () => {
    const keys = attemptKeys('a}b@c:{d', '192.0.2.1', { ...KEYS, usernameCanonical: { lowerCase: true, realmSeparators: '', pattern: undefined } });
    assert.equal(keys.pair, '{a%7Db%40c%3A%7Bd@192.0.2.1}');
    assert.equal((keys.pair.match(/[{}]/g) ?? []).length, 2);
    assert.equal(keys.userId, 'a%7Db%40c%3A%7Bd');
  });
});

describe('CIDR lists', () => {
  const list = new CidrList(['192.0.2.0/24', '2001:db8::/32', '198.51.100.7']);
  it('matches IPv4, IPv6 and single hosts, and IPv4-mapped clients as IPv4', () => {
    assert.equal(list.has('192.0.2.200'), true);
    assert.equal(list.has('::ffff:192.0.2.200'), true);
    assert.equal(list.has('192.0.3.1'), false);
    assert.equal(list.has('2001:db8:ffff::1'), true);
    assert.equal(list.has('2001:db9::1'), false);
    assert.equal(list.has('198.51.100.7'), true);
    assert.equal(list.has('198.51.100.8'), false);
    assert.equal(list.has('not-an-ip'), false);
  });
  it('an empty list matches nothing; a bad block is refused', () => {
    assert.equal(new CidrList([]).has('127.0.0.1'), false);
    assert.throws(() => new CidrList(['192.0.2.0/33']), /prefix length/);
  });
});

describe('failed-password fingerprint', () => {
  const dir = scratchDir('popwarden-hmac');
  it('is a keyed, truncated HMAC: stable, per pair, per key, never the password', () => {
    const key = Buffer.alloc(32, 1);
    const tag = passwordTag(key, '{alice@192.0.2.1}', Buffer.from('hunter2'));
    assert.match(tag, /^[0-9a-f]{16}$/);
    assert.equal(passwordTag(key, '{alice@192.0.2.1}', Buffer.from('hunter2')), tag);
    assert.notEqual(passwordTag(key, '{bob@192.0.2.1}', Buffer.from('hunter2')), tag);
    assert.notEqual(passwordTag(key, '{alice@192.0.2.1}', Buffer.from('hunter3')), tag);
    assert.notEqual(passwordTag(Buffer.alloc(32, 2), '{alice@192.0.2.1}', Buffer.from('hunter2')), tag);
    assert.ok(!tag.includes(Buffer.from('hunter2').toString('hex').slice(0, 8)));
  });
  it('generates its key once in state_dir with mode 0600, and reuses it', () => {
    const first = loadHmacKey(undefined, dir);
    assert.equal(first.generated, true);
    assert.equal(statSync(first.file).mode & 0o777, 0o600);
    const second = loadHmacKey(undefined, dir);
    assert.equal(second.generated, false);
    assert.deepEqual(second.key, first.key);
  });
  it('refuses a configured key file that is too short', () => {
    const file = join(dir, 'short.key');
    writeFileSync(file, 'abcd\n');
    assert.throws(() => loadHmacKey(file, dir), /at least 32/);
  });
});

describe('connection gate', () => {
  const make = (options: Partial<ConstructorParameters<typeof ConnectionLimits>[0]> = {}) => {
    let now = 1_000_000;
    const gate = new ConnectionLimits({
      maxSessionsPerIp: 2,
      maxNewConnectionsPerIp: 3,
      ipv6PrefixLength: 64,
      allow: new CidrList(['192.0.2.50']),
      deny: new CidrList(['203.0.113.0/24']),
      now: () => now,
      ...options,
    });
    return { gate, tick: (ms: number) => (now += ms) };
  };

  it('bounds concurrent sessions per address and frees a place on release', () => {
    const { gate, tick } = make();
    const a = gate.admit('192.0.2.1');
    tick(1_000);
    const b = gate.admit('192.0.2.1');
    tick(1_000);
    assert.deepEqual(gate.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_sessions' });
    assert.equal(gate.admit('192.0.2.2').kind, 'admitted');
    assert.ok(a.kind === 'admitted' && b.kind === 'admitted');
    a.release();
    a.release();
    assert.equal(gate.openSessions('192.0.2.1'), 1);
    assert.equal(gate.admit('192.0.2.1').kind, 'admitted');
  });

  it('bounds new connections per address per second, counting an IPv6 /64 as one address', () => {
    const { gate, tick } = make({ maxSessionsPerIp: 0 });
    for (let i = 1; i <= 3; i++) assert.equal(gate.admit(`2001:db8:1:2::${i}`).kind, 'admitted');
    assert.deepEqual(gate.admit('2001:db8:1:2::99'), { kind: 'refused', reason: 'too_many_connections' });
    assert.equal(gate.admit('2001:db8:1:3::1').kind, 'admitted');
    tick(1_000);
    assert.equal(gate.admit('2001:db8:1:2::4').kind, 'admitted');
  });

  it('refuses denied addresses and never bounds allowed ones', () => {
    const { gate } = make();
    assert.deepEqual(gate.admit('203.0.113.9'), { kind: 'refused', reason: 'denied' });
    assert.deepEqual(gate.admit('::ffff:203.0.113.9'), { kind: 'refused', reason: 'denied' });
    for (let i = 0; i < 10; i++) assert.equal(gate.admit('192.0.2.50').kind, 'admitted');
  });
});
