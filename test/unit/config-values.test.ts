import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_DURATION_MS,
  MAX_STORE_DURATION_MS,
  formatDuration,
  formatHostPort,
  parseDuration,
  parseHostPort,
  type Parsed,
} from '../../src/config/values.js';

function value<T>(result: Parsed<T>): T {
  assert.ok(result.ok, `expected success, got: ${result.ok ? '' : result.problem}`);
  return result.value;
}

function problem<T>(result: Parsed<T>): string {
  assert.ok(!result.ok, `expected a problem, got ${JSON.stringify(result)}`);
  return result.problem;
}

describe('parseDuration', () => {
  it('reads each unit', () => {
    assert.equal(value(parseDuration('500ms')), 500);
    assert.equal(value(parseDuration('2s')), 2_000);
    assert.equal(value(parseDuration('10m')), 600_000);
    assert.equal(value(parseDuration('1h')), 3_600_000);
    assert.equal(value(parseDuration('0s')), 0);
  });

  it('takes a bare 0 as zero: no unit can make it ambiguous', () => {
    assert.equal(value(parseDuration('0')), 0);
    assert.equal(value(parseDuration('0', MAX_STORE_DURATION_MS)), 0);
  });

  it('refuses a bare number and suggests a unit', () => {
    assert.match(problem(parseDuration('600')), /no unit.*"600s"/);
    assert.match(problem(parseDuration('00')), /no unit/);
    assert.match(problem(parseDuration('01')), /no unit/);
    assert.match(problem(parseDuration('1.5')), /no unit/);
  });

  it('refuses malformed text', () => {
    for (const text of ['', '2 s', '1.5s', '-1s', '10min', 's', '2S', ' 2s', '1h30m']) {
      assert.match(problem(parseDuration(text)), /not a duration/, text);
    }
  });

  it('refuses durations Node timers cannot hold', () => {
    assert.equal(value(parseDuration(`${MAX_DURATION_MS}ms`)), MAX_DURATION_MS);
    assert.match(problem(parseDuration(`${MAX_DURATION_MS + 1}ms`)), /timers/);
    assert.match(problem(parseDuration('1000h')), /timers/);
  });

  it('formats to the shortest exact unit', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(2000), '2s');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(600_000), '10m');
    assert.equal(formatDuration(7_200_000), '2h');
  });

  it('round-trips format → parse for every representable duration', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
        assert.equal(value(parseDuration(formatDuration(ms))), ms);
      }),
    );
  });
});

describe('parseHostPort', () => {
  const listener = { allowPortZero: true };
  const backend = { allowPortZero: false };

  it('reads IPv4, host names and bracketed IPv6', () => {
    assert.deepEqual(value(parseHostPort('0.0.0.0:995', listener)), { host: '0.0.0.0', port: 995 });
    assert.deepEqual(value(parseHostPort('localhost:110', backend)), { host: 'localhost', port: 110 });
    assert.deepEqual(value(parseHostPort('mail.example-isp.net:110', backend)), {
      host: 'mail.example-isp.net',
      port: 110,
    });
    assert.deepEqual(value(parseHostPort('[::1]:995', listener)), { host: '::1', port: 995 });
    assert.deepEqual(value(parseHostPort('[::]:995', listener)), { host: '::', port: 995 });
    assert.deepEqual(value(parseHostPort('[2001:db8::5]:65535', backend)), { host: '2001:db8::5', port: 65535 });
  });

  it('allows port 0 for listeners only', () => {
    assert.equal(value(parseHostPort('127.0.0.1:0', listener)).port, 0);
    assert.match(problem(parseHostPort('127.0.0.1:0', backend)), /port 0, out of range; use 1 to 65535/);
  });

  it('refuses ports out of range or not numeric', () => {
    assert.match(problem(parseHostPort('127.0.0.1:65536', listener)), /out of range/);
    assert.match(problem(parseHostPort('127.0.0.1:pop3', listener)), /invalid port "pop3"/);
    assert.match(problem(parseHostPort('127.0.0.1:', listener)), /invalid port ""/);
    assert.match(problem(parseHostPort('127.0.0.1:-1', listener)), /invalid port/);
    assert.match(problem(parseHostPort('127.0.0.1:995 ', listener)), /invalid port/);
  });

  it('explains a missing port and a missing host', () => {
    assert.match(problem(parseHostPort('localhost', backend)), /no port.*localhost:110/);
    assert.match(problem(parseHostPort(':995', listener)), /no host/);
  });

  it('asks for brackets around IPv6', () => {
    assert.match(problem(parseHostPort('::1:995', listener)), /brackets.*\[::1\]:995/);
    assert.match(problem(parseHostPort('[::1]995', listener)), /\[IPV6\]:PORT/);
    assert.match(problem(parseHostPort('[::1', listener)), /\[IPV6\]:PORT/);
    assert.match(problem(parseHostPort('[localhost]:995', listener)), /invalid IPv6/);
  });

  it('refuses broken addresses and names', () => {
    assert.match(problem(parseHostPort('10.0.0.256:110', backend)), /invalid IPv4/);
    assert.match(problem(parseHostPort('bad_name:110', backend)), /invalid host name/);
    assert.match(problem(parseHostPort('-x.example:110', backend)), /invalid host name/);
    assert.match(problem(parseHostPort('a..b:110', backend)), /invalid host name/);
  });

  it('formats IPv6 with brackets so the result parses back', () => {
    assert.equal(formatHostPort({ host: '::1', port: 995 }), '[::1]:995');
    assert.equal(formatHostPort({ host: '127.0.0.1', port: 0 }), '127.0.0.1:0');
    for (const text of ['[::1]:995', '0.0.0.0:110', 'localhost:1']) {
      assert.equal(formatHostPort(value(parseHostPort(text, listener))), text);
    }
  });
});
