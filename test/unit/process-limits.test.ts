/**
 * The bounds of the whole process (limits.max_sessions, limits.max_handshakes) and the per-address
 * handshake bound counted per IPv6 network (issue 9, point 6).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { HandshakeLimiter } from '../../src/net/handshake-limit.js';
import { readFileSync } from 'node:fs';
import { DESCRIPTOR_RESERVE, EVICTION_MIN_AGE_MS } from '../../src/config/limits.js';
import { CidrList } from '../../src/net/cidr.js';
import { descriptorWarning, descriptorsNeeded } from '../../src/net/descriptor-budget.js';
import { ReturningClients } from '../../src/net/returning-clients.js';

describe('limits.max_sessions', () => {
  const make = () =>
    new ConnectionLimits({
      maxSessions: 3,
      maxSessionsPerIp: 2,
      maxNewConnectionsPerIp: 0,
      ipv6PrefixLength: 64,
      allow: new CidrList(['192.0.2.50']),
      deny: new CidrList(['203.0.113.0/24']),
    });

  it('bounds the sessions of all addresses together, allow-listed ones included', () => {
    const gate = make();
    const admitted = ['192.0.2.1', '192.0.2.2', '192.0.2.50'].map((ip) => gate.admit(ip));
    assert.deepEqual(admitted.map((a) => a.kind), ['admitted', 'admitted', 'admitted']);
    assert.deepEqual(gate.admit('192.0.2.3'), { kind: 'refused', reason: 'max_sessions' });
    assert.deepEqual(gate.admit('192.0.2.50'), { kind: 'refused', reason: 'max_sessions' });
    assert.equal(gate.openSessions(), 3);
    // A refusal for the process holds no per-address place.
    assert.equal(gate.openSessions('192.0.2.3'), 0);
    const [first] = admitted;
    assert.ok(first?.kind === 'admitted');
    first.release();
    first.release();
    assert.equal(gate.openSessions(), 2);
    assert.equal(gate.admit('192.0.2.3').kind, 'admitted');
  });

  it('full: asks makeRoom, admits once room is made, and counts the connection once in its address\'s rate', () => {
    const gate = new ConnectionLimits({ maxSessions: 1, maxSessionsPerIp: 5, maxNewConnectionsPerIp: 2, ipv6PrefixLength: 64, allow: new CidrList([]), deny: new CidrList([]) });
    const first = gate.admit('192.0.2.1');
    assert.ok(first.kind === 'admitted');
    assert.deepEqual(gate.admit('192.0.2.2', () => false), { kind: 'refused', reason: 'max_sessions' });
    const second = gate.admit('192.0.2.3', () => (first.release(), true));
    assert.ok(second.kind === 'admitted');
    // 192.0.2.3's second connection this second: within its 2 only if the first counted once.
    assert.equal(gate.admit('192.0.2.3', () => (second.release(), true)).kind, 'admitted');
    assert.equal(gate.openSessions(), 1);
  });

  it('keeps the more specific reasons: deny list, then the per-address bound', () => {
    const gate = make();
    gate.admit('192.0.2.1');
    gate.admit('192.0.2.1');
    assert.deepEqual(gate.admit('203.0.113.9'), { kind: 'refused', reason: 'denied' });
    assert.deepEqual(gate.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_sessions' });
    assert.equal(gate.openSessions(), 2);
  });

  it('0 means no bound', () => {
    const gate = new ConnectionLimits({ maxSessions: 0, maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, ipv6PrefixLength: 64, allow: new CidrList([]), deny: new CidrList([]) });
    for (let i = 0; i < 1_000; i++) assert.equal(gate.admit(`10.0.${i >> 8}.${i & 255}`).kind, 'admitted');
  });
});

describe('HandshakeLimiter', () => {
  it('counts an IPv6 client by its /64, like the other per-address limits', () => {
    const limiter = new HandshakeLimiter({ maxPerIp: 2, maxTotal: 0, ipv6PrefixLength: 64 });
    assert.equal(limiter.admit('2001:db8:1:2::1').kind, 'started');
    assert.equal(limiter.admit('2001:db8:1:2:ffff:ffff:ffff:ffff').kind, 'started');
    assert.deepEqual(limiter.admit('2001:db8:1:2:abcd::7'), { kind: 'refused', reason: 'too_many_handshakes' });
    assert.equal(limiter.inProgress('2001:db8:1:2::99'), 2);
    assert.equal(limiter.admit('2001:db8:1:3::1').kind, 'started', 'the next /64 is another address');
  });

  it('follows rate_limit.ipv6_prefix, and counts IPv4-mapped IPv6 as IPv4', () => {
    const limiter = new HandshakeLimiter({ maxPerIp: 1, maxTotal: 0, ipv6PrefixLength: 48 });
    assert.equal(limiter.admit('2001:db8:1:2::1').kind, 'started');
    assert.equal(limiter.admit('2001:db8:1:3::1').kind, 'refused');
    assert.equal(limiter.admit('192.0.2.7').kind, 'started');
    assert.equal(limiter.admit('::ffff:192.0.2.7').kind, 'refused');
  });

  // The same rules as ConnectionLimits' process bound above, checked on this class's own: the two
  // gates are separate code, so each gets the whole check.
  it('bounds the handshakes of all addresses together, and frees a place on release', () => {
    const limiter = new HandshakeLimiter({ maxPerIp: 10, maxTotal: 3, ipv6PrefixLength: 64 });
    const started = ['192.0.2.1', '192.0.2.2', '2001:db8::1'].map((ip) => limiter.admit(ip));
    assert.deepEqual(limiter.admit('192.0.2.4'), { kind: 'refused', reason: 'max_handshakes' });
    assert.equal(limiter.begin('192.0.2.4'), undefined);
    const [first] = started;
    assert.ok(first?.kind === 'started');
    first.release();
    first.release();
    assert.equal(limiter.inProgress(), 2);
    assert.equal(limiter.admit('192.0.2.4').kind, 'started');
    assert.equal(limiter.inProgress('192.0.2.1'), 0);
  });

  it('full: evicts the oldest evictable handshake past the age floor, passing over one that may not be evicted', () => {
    let now = 0;
    const limiter = new HandshakeLimiter({ maxPerIp: 10, maxTotal: 3, ipv6PrefixLength: 64, now: () => now });
    const evicted: string[] = [];
    limiter.admit('192.0.2.1'); // after STLS: no evict, never chosen
    limiter.admit('192.0.2.2', () => evicted.push('192.0.2.2'));
    now += 10;
    limiter.admit('192.0.2.3', () => evicted.push('192.0.2.3'));
    now += EVICTION_MIN_AGE_MS - 10;
    assert.equal(limiter.admit('192.0.2.4').kind, 'started');
    assert.deepEqual(evicted, ['192.0.2.2']);
    assert.equal(limiter.inProgress(), 3);
    assert.equal(limiter.inProgress('192.0.2.2'), 0);
    // The next oldest evictable one is 10 ms short of the floor: the newest is refused.
    assert.deepEqual(limiter.admit('192.0.2.5', () => undefined), { kind: 'refused', reason: 'max_handshakes' });
    assert.deepEqual(evicted, ['192.0.2.2']);
  });

  it('the per-address bound still refuses the newest, whatever the age of the oldest', () => {
    let now = 0;
    const limiter = new HandshakeLimiter({ maxPerIp: 1, maxTotal: 2, ipv6PrefixLength: 64, now: () => now });
    const evicted: string[] = [];
    limiter.admit('192.0.2.1', () => evicted.push('192.0.2.1'));
    now += 10 * EVICTION_MIN_AGE_MS;
    assert.deepEqual(limiter.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_handshakes' });
    assert.deepEqual(evicted, []);
  });
});

describe('returning clients', () => {
  it('a successful login makes an address (an IPv6 client: its network) returning for the ttl, on its account', () => {
    let now = 0;
    const returning = new ReturningClients({ ttlMs: 1_000, ipv6PrefixLength: 64, now: () => now });
    assert.equal(returning.accountOf('192.0.2.1'), undefined);
    returning.remember('192.0.2.1', 'alice');
    returning.remember('2001:db8:1:2::1', 'bob');
    assert.equal(returning.accountOf('::ffff:192.0.2.1'), 'alice');
    assert.equal(returning.accountOf('2001:db8:1:2::99'), 'bob', 'the same /64');
    assert.equal(returning.accountOf('2001:db8:1:3::1'), undefined);
    returning.remember('192.0.2.1', 'carol');
    assert.equal(returning.accountOf('192.0.2.1'), 'carol', 'the last login names the account');
    now += 1_000;
    assert.equal(returning.accountOf('192.0.2.1'), undefined, 'expired');
  });

  it('is bounded: past it, the address whose last login is oldest goes; trusted_for 0s remembers nobody', () => {
    const returning = new ReturningClients({ ttlMs: 1_000, ipv6PrefixLength: 64, maxAddresses: 2 });
    for (const address of ['192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.3']) returning.remember(address, 'alice');
    assert.deepEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((a) => returning.accountOf(a)), ['alice', undefined, 'alice']);
    const nobody = new ReturningClients({ ttlMs: 0, ipv6PrefixLength: 64 });
    nobody.remember('192.0.2.1', 'alice');
    assert.equal(nobody.accountOf('192.0.2.1'), undefined);
  });

  it('the last 1/16 of each process bound is theirs, and 0 (no bound) stays 0', () => {
    const gate = new ConnectionLimits({ maxSessions: 16, maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, ipv6PrefixLength: 64, allow: new CidrList([]), deny: new CidrList([]) });
    for (let i = 0; i < 15; i++) assert.equal(gate.admit(`192.0.2.${i}`).kind, 'admitted');
    assert.deepEqual(gate.admit('192.0.2.99'), { kind: 'refused', reason: 'max_sessions' });
    assert.equal(gate.admit('192.0.2.99', undefined, 'alice').kind, 'admitted');
    assert.deepEqual(gate.admit('192.0.2.98', undefined, 'bob'), { kind: 'refused', reason: 'max_sessions' });
    const limiter = new HandshakeLimiter({ maxPerIp: 0, maxTotal: 16, ipv6PrefixLength: 64, returning: (a) => (a === '192.0.2.99' ? 'alice' : undefined) });
    for (let i = 0; i < 15; i++) assert.equal(limiter.admit(`192.0.2.${i}`).kind, 'started');
    assert.deepEqual(limiter.admit('192.0.2.98'), { kind: 'refused', reason: 'max_handshakes' });
    assert.equal(limiter.admit('192.0.2.99').kind, 'started');
    const unbounded = new ConnectionLimits({ maxSessions: 0, maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, ipv6PrefixLength: 64, allow: new CidrList([]), deny: new CidrList([]) });
    for (let i = 0; i < 100; i++) assert.equal(unbounded.admit(`192.0.2.${i}`).kind, 'admitted');
  });

  it('one account holds at most a quarter of the kept share, from however many addresses; a place given back is free again', () => {
    // 64 places: 60 for strangers, 4 kept, of which one account may hold 1.
    const account = (a: string): string | undefined => (a.startsWith('198.51.100.') ? 'mallory' : a === '192.0.2.99' ? 'alice' : undefined);
    const gate = new ConnectionLimits({ maxSessions: 64, maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, ipv6PrefixLength: 64, allow: new CidrList([]), deny: new CidrList([]) });
    for (let i = 0; i < 60; i++) assert.equal(gate.admit(`192.0.2.${i}`).kind, 'admitted');
    const mallorys = ['198.51.100.1', '198.51.100.2', '198.51.100.3'].map((ip) => gate.admit(ip, undefined, account(ip)));
    assert.deepEqual(mallorys.map((a) => a.kind), ['admitted', 'refused', 'refused']);
    assert.equal(gate.admit('192.0.2.99', undefined, 'alice').kind, 'admitted');
    const [first] = mallorys;
    assert.ok(first?.kind === 'admitted');
    first.release();
    assert.equal(gate.admit('198.51.100.4', undefined, 'mallory').kind, 'admitted', 'its place is free again');

    const limiter = new HandshakeLimiter({ maxPerIp: 0, maxTotal: 64, ipv6PrefixLength: 64, returning: account });
    for (let i = 0; i < 60; i++) assert.equal(limiter.admit(`192.0.2.${i}`).kind, 'started');
    assert.deepEqual(['198.51.100.1', '198.51.100.2', '198.51.100.3'].map((ip) => limiter.admit(ip).kind), ['started', 'refused', 'refused']);
    assert.equal(limiter.admit('192.0.2.99').kind, 'started');
  });
});

describe('file descriptors for limits.max_sessions', () => {
  const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                20000                files\n`;

  it('warns when 2 descriptors per session and the reserve do not fit, and says what fits', () => {
    assert.equal(descriptorsNeeded(5_000), 10_320);
    assert.equal(descriptorWarning(5_000, () => limits('20000')), undefined);
    assert.equal(
      descriptorWarning(5_000, () => limits('1024')),
      'limits.max_sessions 5000 needs 10320 file descriptors but the limit is 1024: raise it (LimitNOFILE= in the unit, ulimit -n) or set limits.max_sessions to 352 or less',
    );
  });

  it("with an exec: backend, each program's stderr pipe is one more: limits.max_backend_processes of them", () => {
    assert.equal(descriptorsNeeded(5_000, 100), 10_420);
    assert.equal(
      descriptorWarning(5_000, () => limits('10320'), 100),
      'limits.max_sessions 5000 and limits.max_backend_processes 100 need 10420 file descriptors but the limit is 10320: raise it (LimitNOFILE= in the unit, ulimit -n) or set limits.max_sessions to 4950 or less',
    );
    assert.equal(descriptorWarning(5_000, () => limits('10420'), 100), undefined);
  });

  it('the example config and the systemd unit give the same count (they said + 64 and 10064)', () => {
    const contrib = (name: string): string => readFileSync(new URL(`../../contrib/${name}`, import.meta.url), 'utf8');
    assert.match(contrib('popwarden.example.yaml'), new RegExp(`keep 2 x max_sessions \\+ ${DESCRIPTOR_RESERVE}\\b`));
    assert.match(contrib('popwarden.service').replace(/\n# /g, ' '), new RegExp(`the ${descriptorsNeeded(5_000)} that limits\\.max_sessions 5000 needs`));
  });

  it('says nothing without a bound, with an unlimited limit, or without /proc', () => {
    assert.equal(descriptorWarning(0, () => limits('16')), undefined);
    assert.equal(descriptorWarning(5_000, () => limits('unlimited')), undefined);
    assert.equal(
      descriptorWarning(5_000, () => {
        throw new Error('ENOENT');
      }),
      undefined,
    );
  });
});
