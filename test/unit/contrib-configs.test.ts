/**
 * The deployment files in contrib/ that the README points at are valid as shipped: each popwarden
 * YAML passes the config schema (its certificate and key paths are the operator's, so the file
 * checks are not run), and the HAProxy config passes `haproxy -c`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readConfigFile } from '../../src/config/config-file.js';
import { configSchema } from '../../src/config/schema.js';
import { CONFIG_KEYS } from '../../src/config/schema-keys.js';

const CONTRIB = new URL('../../contrib', import.meta.url).pathname;

for (const name of ['instance-a.yaml', 'instance-b.yaml']) {
  test(`contrib/popwarden/${name} passes the config schema`, () => {
    const parsed = configSchema.safeParse(readConfigFile(join(CONTRIB, 'popwarden', name)).data);
    assert.ok(parsed.success, parsed.success ? '' : parsed.error.message);
    assert.equal(parsed.data.rate_limit.key_prefix, 'popwarden');
  });
}

test('contrib/haproxy/haproxy.cfg passes haproxy -c', { skip: spawnSync('haproxy', ['-v']).status !== 0 && 'haproxy is not installed' }, () => {
  const check = spawnSync('haproxy', ['-c', '-q', '-f', join(CONTRIB, 'haproxy', 'haproxy.cfg')], { encoding: 'utf8' });
  assert.equal(check.status, 0, check.stderr);
});

test('contrib/popwarden.example.yaml names every config key (the README says it lists them all)', () => {
  const example = readFileSync(join(CONTRIB, 'popwarden.example.yaml'), 'utf8');
  // Keys are written as `#key: default` or inside a flow mapping (`#user: { max_failures: 50, ... }`).
  const missing = CONFIG_KEYS.filter((key) => !new RegExp(`(^\\s*#?\\s*|[{,]\\s*)${key.path.at(-1)!}:`, 'm').test(example)).map((key) => key.name);
  assert.deepEqual(missing, []);
});

test("contrib/haproxy/haproxy.cfg checks each instance's /readyz on its metrics_listen, so an instance with every backend down gets no clients", () => {
  const haproxy = readFileSync(join(CONTRIB, 'haproxy', 'haproxy.cfg'), 'utf8');
  assert.match(haproxy, /^\s*option httpchk GET \/readyz$/m);
  assert.match(haproxy, /^\s*http-check expect status 200$/m);
  const metrics = new Map(['instance-a.yaml', 'instance-b.yaml'].map((name) => {
    const settings = readConfigFile(join(CONTRIB, 'popwarden', name)).data as { metrics_listen?: string };
    const [host, port] = (settings.metrics_listen ?? '').split(':');
    return [host, port];
  }));
  const servers = [...haproxy.matchAll(/^\s*server \S+ ([\d.]+):\d+ (.*)$/gm)];
  assert.equal(servers.length, 4);
  for (const [, host, options] of servers) {
    assert.ok(metrics.has(host), `${host}: no instance YAML has its metrics_listen there`);
    assert.match(options!, new RegExp(`\\bcheck port ${metrics.get(host)}\\b`), `${host}: ${options}`);
    assert.doesNotMatch(options!, /check-send-proxy/, 'the check goes to the HTTP endpoint, which takes no PROXY header');
  }
});
