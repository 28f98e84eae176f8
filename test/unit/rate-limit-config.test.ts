/** The redis: and rate_limit: keys, and limits.max_*_per_ip, as loaded from flags, env and defaults. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, redactedConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { describeSwitchedOff } from '../../src/auth/rate-limit/policy.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../harness/scratch.js';

const BACKEND = ['--backend', '127.0.0.1:1110'];
const loaded = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const result = loadConfig(argv, env);
  assert.ok(result.action === 'run');
  return result;
};
const load = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => loaded(argv, env).config;
const loadError = (argv: string[], env: NodeJS.ProcessEnv = {}): string => {
  try {
    loadConfig(argv, env);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('rate-limit configuration', () => {
  it('defaults: in memory, the issue-4 numbers, insurance', () => {
    const config = load(BACKEND);
    assert.deepEqual(config.redis.target, { kind: 'none' });
    assert.equal(config.redis.commandTimeoutMs, 500);
    assert.deepEqual(config.rateLimit.userIp, { maxFailures: 10, windowMs: 90 * 86_400_000, blockMs: 3_600_000 });
    assert.deepEqual(config.rateLimit.ip, { maxFailures: 100, windowMs: 86_400_000, blockMs: 86_400_000 });
    assert.deepEqual(config.rateLimit.user, { maxFailures: 50, windowMs: 3_600_000, blockMs: 900_000 });
    assert.equal(config.rateLimit.trustedPairMs, 30 * 86_400_000);
    assert.equal(config.rateLimit.onStoreFailure, 'insurance');
    assert.equal(config.rateLimit.keyPrefix, 'popwarden');
    assert.equal(config.limits.maxSessionsPerIp, 20);
    assert.equal(config.limits.maxNewConnectionsPerIp, 10);
  });

  it('--redis is an alias of --redis-url; both at once is an error', () => {
    assert.deepEqual(load([...BACKEND, '--redis', 'redis://127.0.0.1:6390']).redis.target, { kind: 'url', url: 'redis://127.0.0.1:6390' });
    assert.deepEqual(load([...BACKEND, '--redis-url', 'rediss://h:6380/1']).redis.target, { kind: 'url', url: 'rediss://h:6380/1' });
    assert.match(loadError([...BACKEND, '--redis', 'redis://a:1', '--redis-url', 'redis://b:2']), /same setting/);
    assert.match(loadError([...BACKEND, '--redis', 'http://x']), /redis:\/\/ or rediss:\/\//);
  });

  it('Sentinel needs a name; url, sentinels and cluster exclude each other', () => {
    const sentinel = load([...BACKEND], { POPWARDEN_REDIS__SENTINELS: '127.0.0.1:26379,127.0.0.2:26379', POPWARDEN_REDIS__NAME: 'mymaster' });
    assert.deepEqual(sentinel.redis.target, {
      kind: 'sentinel',
      name: 'mymaster',
      sentinels: [
        { host: '127.0.0.1', port: 26379 },
        { host: '127.0.0.2', port: 26379 },
      ],
    });
    assert.match(loadError([...BACKEND, '--redis-sentinels', '127.0.0.1:26379']), /redis.name/);
    assert.match(loadError([...BACKEND, '--redis-url', 'redis://a:1', '--redis-cluster', '127.0.0.1:7000']), /one of url, sentinels or cluster/);
  });

  it('durations take a day unit; CIDRs are checked and kept canonical', () => {
    const config = load([...BACKEND, '--rate-limit-user-ip-window', '7d', '--rate-limit-allow', '192.0.2.0/24,2001:db8::1', '--rate-limit-deny', '203.0.113.0/24']);
    assert.equal(config.rateLimit.userIp.windowMs, 7 * 86_400_000);
    assert.deepEqual(config.rateLimit.allow, ['192.0.2.0/24', '2001:db8::1']);
    assert.match(loadError([...BACKEND, '--rate-limit-deny', '192.0.2.0/40']), /--rate-limit-deny.*prefix length/);
    assert.match(loadError([...BACKEND, '--rate-limit-on-store-failure', 'open']), /insurance, fail_closed/);
  });

  it('username_canonical: strips realms after @ and % and lower-cases by default; a pattern needs one capture (issue 9.1)', () => {
    assert.deepEqual(load(BACKEND).rateLimit.usernameCanonical, { lowerCase: true, realmSeparators: '@%', pattern: undefined });
    const exact = load([...BACKEND, '--rate-limit-username-canonical-realm-separators', '', '--no-rate-limit-username-canonical-lower-case']);
    assert.deepEqual(exact.rateLimit.usernameCanonical, { lowerCase: false, realmSeparators: '', pattern: undefined });
    const pattern = loaded([], { POPWARDEN_BACKEND: '127.0.0.1:1110', POPWARDEN_RATE_LIMIT__USERNAME_CANONICAL__PATTERN: '^([^+@]+)' });
    assert.deepEqual(pattern.config.rateLimit.usernameCanonical, { lowerCase: true, realmSeparators: '', pattern: '^([^+@]+)' });
    assert.deepEqual(redactedConfig(pattern.settings).rate_limit?.username_canonical, { lower_case: true, pattern: '^([^+@]+)' });
    assert.match(loadError([...BACKEND, '--rate-limit-username-canonical-pattern', '^[^@]+$']), /exactly one capture group/);
    assert.match(loadError([...BACKEND, '--rate-limit-username-canonical-pattern', '^(a)(b)']), /exactly one capture group/);
    assert.match(loadError([...BACKEND, '--rate-limit-username-canonical-pattern', '^(a']), /not a valid regular expression/);
    assert.match(loadError([...BACKEND, '--rate-limit-username-canonical-realm-separators', 'ab']), /punctuation/);
    assert.match(
      loadError([...BACKEND, '--rate-limit-username-canonical-pattern', '^([^@]+)', '--rate-limit-username-canonical-realm-separators', '@']),
      /realm_separators or pattern, not both/,
    );
  });

  it('the replaced normalise_usernames key names its successor', () => {
    const dir = scratchDir('popwarden-rl');
    const file = join(dir, 'popwarden.yaml');
    writeFileSync(file, 'backend: 127.0.0.1:1110\nrate_limit:\n  normalise_usernames: true\n');
    assert.match(loadError(['-c', file]), /popwarden.yaml:3: "rate_limit.normalise_usernames" was replaced by "rate_limit.username_canonical/);
  });

  it('a limiter is off with max_failures 0 and only so: a window or block under 1s is refused (issue 9.5)', () => {
    const off = load([...BACKEND, '--rate-limit-user-ip-max-failures', '0', '--rate-limit-trusted-for', '0s']);
    assert.equal(off.rateLimit.userIp.maxFailures, 0);
    assert.deepEqual(describeSwitchedOff(off.rateLimit), [
      'rate_limit.user_ip is off (max_failures: 0): failures are not counted per user and address',
      'rate_limit.trusted_for is 0s: no address is trusted; the per-user limit applies everywhere',
    ]);
    assert.deepEqual(describeSwitchedOff(load(BACKEND).rateLimit), []);
    for (const [flag, value] of [
      ['--rate-limit-user-ip-window', '0s'],
      ['--rate-limit-user-ip-block', '0s'],
      ['--rate-limit-ip-window', '500ms'],
      ['--rate-limit-user-block', '0ms'],
    ] as const) {
      assert.match(loadError([...BACKEND, flag, value]), new RegExp(`${flag} "${value}" is under 1s.*set its max_failures to 0`));
    }
    assert.equal(load([...BACKEND, '--rate-limit-user-window', '1s']).rateLimit.user.windowMs, 1_000);
  });

  it('--check-config masks the password of a Redis URL', () => {
    const raw = redactedConfig(loaded([...BACKEND, '--redis', 'redis://user:hunter2@127.0.0.1:6379/0']).settings);
    assert.equal(raw.redis?.url, 'redis://user:********@127.0.0.1:6379/0');
  });
});
