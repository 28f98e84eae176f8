/**
 * limits.max_new_connections_per_ip_per_minute's counter (net/address-rate.ts): a sliding minute
 * per address, in a table that stays bounded (issue 14.3).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AddressRate } from '../../src/net/address-rate.js';
import { ConnectionLimits } from '../../src/net/connection-limits.js';
import { CidrList } from '../../src/net/cidr.js';
import { RETURNING_PROTOCOL_ERRORS_FACTOR } from '../../src/config/limits.js';

describe('AddressRate', () => {
  it('allows the whole minute at once, then one event per 60/perMinute seconds', () => {
    const rate = new AddressRate(6, 100);
    const at0 = Array.from({ length: 8 }, () => rate.take('a', 0));
    assert.deepEqual(at0, [true, true, true, true, true, true, false, false]);
    assert.equal(rate.take('a', 9_999), false);
    assert.equal(rate.take('a', 10_000), true);
    assert.equal(rate.take('a', 10_000), false);
    // Other keys have their own minute.
    assert.equal(rate.take('b', 10_000), true);
  });

  it('forgets a key once its minute is whole again, and never holds more than maxKeys', () => {
    const rate = new AddressRate(60, 3);
    rate.take('a', 0);
    rate.take('b', 0);
    assert.equal(rate.size, 2);
    // One event is won back after a second: both are full again, and forgotten.
    rate.take('c', 1_000);
    assert.equal(rate.size, 1);
    for (let i = 0; i < 10; i++) rate.take(`k${i}`, 1_000);
    assert.equal(rate.size, 3);
  });
});

describe('ConnectionLimits with a rate per minute', () => {
  it('spares a returning client the per-minute rate (many users behind one NAT address), not the burst per second', () => {
    const gate = new ConnectionLimits({
      maxSessionsPerIp: 0, maxNewConnectionsPerIp: 5, maxNewConnectionsPerIpPerMinute: 2, ipv6PrefixLength: 64,
      allow: new CidrList([]), deny: new CidrList([]), now: () => 0,
    });
    const outcomes = Array.from({ length: 6 }, () => gate.admit('192.0.2.7', undefined, 'alice').kind);
    assert.deepEqual(outcomes, ['admitted', 'admitted', 'admitted', 'admitted', 'admitted', 'refused']);
    // A stranger from another address meets the minute after two.
    const stranger = Array.from({ length: 3 }, () => gate.admit('198.51.100.7'));
    assert.deepEqual(stranger.map((a) => a.kind), ['admitted', 'admitted', 'refused']);
    assert.deepEqual(stranger[2], { kind: 'refused', reason: 'too_many_connections_per_minute' });
  });

  it('refuses past the minute with its own reason, and a refused connection uses up nothing', () => {
    let now = 0;
    const gate = new ConnectionLimits({
      maxSessionsPerIp: 1, maxNewConnectionsPerIp: 0, maxNewConnectionsPerIpPerMinute: 2, ipv6PrefixLength: 64,
      allow: new CidrList(['192.0.2.50']), deny: new CidrList([]), now: () => now,
    });
    const first = gate.admit('192.0.2.1');
    assert.ok(first.kind === 'admitted');
    // Refused by max_sessions_per_ip: the minute is not touched.
    assert.deepEqual(gate.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_sessions' });
    first.release();
    const second = gate.admit('192.0.2.1');
    assert.ok(second.kind === 'admitted');
    second.release();
    assert.deepEqual(gate.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_connections_per_minute' });
    // IPv6 by its /64, as the other per-address bounds.
    assert.equal(gate.admit('2001:db8::1').kind, 'admitted');
    now += 30_000;
    assert.equal(gate.admit('192.0.2.1').kind, 'admitted');
    // Allow-listed addresses are never rate limited.
    for (let i = 0; i < 10; i++) gate.admit('192.0.2.50');
    assert.equal(gate.admit('192.0.2.50').kind, 'admitted');
  });

  it('a wall clock stepped back an hour (NTP at boot, a VM resumed) refuses nobody for that hour: the rates run on a monotonic clock', (t) => {
    let wall = 1_800_000_000_000;
    t.mock.method(Date, 'now', () => wall);
    const gate = new ConnectionLimits({
      maxSessionsPerIp: 0, maxNewConnectionsPerIp: 10, maxNewConnectionsPerIpPerMinute: 60, ipv6PrefixLength: 64,
      allow: new CidrList([]), deny: new CidrList([]),
    });
    for (let i = 0; i < 5; i++) assert.equal(gate.admit('192.0.2.1').kind, 'admitted');
    wall -= 3_600_000;
    // Read on the wall clock, the address's minute would end an hour from now, and so would the second.
    for (let i = 0; i < 5; i++) assert.equal(gate.admit('192.0.2.1').kind, 'admitted', `connection ${6 + i}`);
  });
});

describe('ConnectionLimits with protocol errors per hour (limits.max_protocol_errors_per_ip_per_hour)', () => {
  const limits = (now: () => number) =>
    new ConnectionLimits({
      maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, maxNewConnectionsPerIpPerMinute: 0, maxProtocolErrorsPerIpPerHour: 3, ipv6PrefixLength: 64,
      allow: new CidrList(['192.0.2.50']), deny: new CidrList([]), now,
    });

  it('refuses an address at accept once its sessions have ended in a protocol error that often, until the hour has room again', () => {
    let now = 0;
    const gate = limits(() => now);
    for (let i = 0; i < 2; i++) gate.protocolError('192.0.2.1');
    assert.equal(gate.admit('192.0.2.1').kind, 'admitted', 'two of three: still admitted');
    gate.protocolError('192.0.2.1');
    assert.deepEqual(gate.admit('192.0.2.1'), { kind: 'refused', reason: 'too_many_protocol_errors' });
    assert.equal(gate.admit('192.0.2.2').kind, 'admitted', 'another address is untouched');
    // IPv6 by its /64, as every per-address bound: rotating addresses inside it does not help.
    for (let i = 1; i <= 3; i++) gate.protocolError(`2001:db8::${i}`);
    assert.deepEqual(gate.admit('2001:db8::99'), { kind: 'refused', reason: 'too_many_protocol_errors' });
    // One error is won back every 20 minutes (an hour / 3).
    now += 20 * 60_000 - 1;
    assert.equal(gate.admit('192.0.2.1').kind, 'refused');
    now += 1;
    assert.equal(gate.admit('192.0.2.1').kind, 'admitted');
    gate.protocolError('192.0.2.1');
    assert.equal(gate.admit('192.0.2.1').kind, 'refused', 'the next error closes it again');
  });

  it('gives a returning client ten times the bound, and never refuses an allow-listed address for it', () => {
    const gate = limits(() => 0);
    for (let i = 0; i < 3 * RETURNING_PROTOCOL_ERRORS_FACTOR - 1; i++) {
      gate.protocolError('192.0.2.7');
      gate.protocolError('192.0.2.50');
    }
    assert.equal(gate.admit('192.0.2.7', undefined, 'alice').kind, 'admitted', 'a broken client behind a NAT others log in from');
    assert.equal(gate.admit('192.0.2.7').kind, 'refused', 'the same address as a stranger');
    // One login does not buy an address an unbounded flood of protocol errors.
    gate.protocolError('192.0.2.7');
    assert.deepEqual(gate.admit('192.0.2.7', undefined, 'alice'), { kind: 'refused', reason: 'too_many_protocol_errors' });
    gate.protocolError('192.0.2.50');
    assert.equal(gate.admit('192.0.2.50').kind, 'admitted');
  });

  it('counts nothing with the bound off (0)', () => {
    const gate = new ConnectionLimits({
      maxSessionsPerIp: 0, maxNewConnectionsPerIp: 0, maxProtocolErrorsPerIpPerHour: 0, ipv6PrefixLength: 64,
      allow: new CidrList([]), deny: new CidrList([]), now: () => 0,
    });
    for (let i = 0; i < 100; i++) gate.protocolError('192.0.2.1');
    assert.equal(gate.admit('192.0.2.1').kind, 'admitted');
  });
});

describe('AddressRate over a period of its own', () => {
  it('hasRoom() tells what take() would, and takes nothing', () => {
    const rate = new AddressRate(2, 100, 3_600_000);
    assert.equal(rate.hasRoom('a', 0), true);
    rate.take('a', 0);
    rate.take('a', 0);
    for (let i = 0; i < 3; i++) assert.equal(rate.hasRoom('a', 0), false);
    assert.equal(rate.hasRoom('a', 1_800_000), true);
    assert.equal(rate.take('a', 1_800_000), true);
    assert.equal(rate.hasRoom('a', 1_800_000), false);
  });
});
