/**
 * Named backends and routes in the config (issue 13.1 and 13.2): the one-backend form stays valid
 * and means one backend named `default`; both forms at once, a route naming no configured backend,
 * a name that would make a bad metric label and a regular expression that could backtrack without
 * bound are refused when the config is loaded, with a message naming the key.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, redactedConfig } from '../../src/config/load.js';
import { fileWriter, scratchDir } from '../harness/scratch.js';

const fileWith = fileWriter(scratchDir('popwarden-routing-config'));

function load(text: string, argv: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const result = loadConfig(['--config', fileWith(text), ...argv], env);
  assert.ok(result.action === 'run' || result.action === 'check');
  return result;
}

function loadError(text: string, argv: string[] = [], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(['--config', fileWith(text), ...argv], env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

const TWO_BACKENDS = `
backends:
  mail1:
    address: 192.0.2.1:110
    auth: apop
    tls: starttls
  mail2:
    address: "[2001:db8::2]:995"
    tls: implicit
    tls_servername: pop.example.net
    allow_plaintext_auth: true
    probe_interval: 5s
    rewrite: strip_domain
    drain: true
routing:
  routes:
    - user: alice@example.org
      backend: mail2
      rewrite: "%n@legacy"
    - user: "*@example.net"
      backend: mail2
    - regex: "^[a-m].*@example\\\\.com$"
      backend: mail1
  default: mail1
`;

describe('backends and routing in the config', () => {
  it('named backends carry their own settings; routes keep their order', () => {
    const { config } = load(TWO_BACKENDS);
    assert.deepEqual(
      config.backends.map((b) => [b.name, b.address, b.auth, b.tls, b.tlsServerName, b.allowPlaintextAuth, b.probeIntervalMs, b.drain, b.rewrite]),
      [
        ['mail1', { kind: 'tcp', host: '192.0.2.1', port: 110 }, 'apop', 'starttls', undefined, false, 30_000, false, undefined],
        ['mail2', { kind: 'tcp', host: '2001:db8::2', port: 995 }, 'auto', 'implicit', 'pop.example.net', true, 5_000, true, 'strip_domain'],
      ],
    );
    assert.deepEqual(config.routing.routes, [
      { match: { kind: 'user', user: 'alice@example.org' }, backend: 'mail2', rewrite: '%n@legacy' },
      { match: { kind: 'domain', domain: 'example.net' }, backend: 'mail2', rewrite: undefined },
      { match: { kind: 'regex', source: '^[a-m].*@example\\.com$' }, backend: 'mail1', rewrite: undefined },
    ]);
    assert.equal(config.routing.defaultBackend, 'mail1');
  });

  it('a named backend takes every address form backend: takes (HOST:PORT, unix:, exec:)', () => {
    const { config, settings } = load(
      'backends:\n  sock:\n    address: unix:/run/ipop3d.sock\n  prog:\n    address: exec:/usr/sbin/ipop3d -x\n  structured:\n    address:\n      exec:\n        command: /usr/sbin/in.qpopper\n        args: ["-s", "two words"]\n',
    );
    assert.deepEqual(config.backends.map((b) => b.address), [
      { kind: 'unix', path: '/run/ipop3d.sock' },
      { kind: 'exec', command: '/usr/sbin/ipop3d', args: ['-x'], environment: {}, cwd: undefined },
      { kind: 'exec', command: '/usr/sbin/in.qpopper', args: ['-s', 'two words'], environment: {}, cwd: undefined },
    ]);
    const again = load(JSON.stringify(redactedConfig(settings)));
    assert.deepEqual(again.config.backends, config.backends);
    assert.match(loadError('backends:\n  sock:\n    address: unix:/run/x.sock\n    source_address: 192.0.2.1\n'), /backends\.sock\.source_address.*applies only to a HOST:PORT backend/);
  });

  it('--check-config prints backends in the form it reads back', () => {
    const loaded = load(TWO_BACKENDS, ['--listen-tls', '127.0.0.1:0']);
    const printed = redactedConfig(loaded.settings) as { backends: Record<string, { address: string; probe_interval?: string }> };
    assert.equal(printed.backends['mail2']?.address, '[2001:db8::2]:995');
    assert.equal(printed.backends['mail2']?.probe_interval, '5s');
    const again = load(JSON.stringify(printed));
    assert.deepEqual(again.config.backends, loaded.config.backends);
    assert.deepEqual(again.config.routing, loaded.config.routing);
  });

  it('backend: alone is one backend named default, every user\'s route', () => {
    const { config } = load('backend: 127.0.0.1:1110\nbackend_auth: apop\n');
    assert.deepEqual(config.backends.map((b) => [b.name, b.address, b.auth]), [['default', { kind: 'tcp', host: '127.0.0.1', port: 1110 }, 'apop']]);
    assert.equal(config.routing.defaultBackend, 'default');
  });

  it('both forms at once are refused, and so is a backend_* key beside backends', () => {
    assert.match(loadError(`backend: 127.0.0.1:1110\n${TWO_BACKENDS}`), /backends .*is set together with backend; give one backend with backend \(and backend_\*\), or name them all in backends/);
    assert.match(loadError(TWO_BACKENDS, ['--backend-tls', 'off']), /^config: --backend-tls is set together with backends; .*backends\.NAME\.tls/);
    assert.match(loadError(TWO_BACKENDS, [], { POPWARDEN_ALLOW_PLAINTEXT_BACKEND_AUTH: 'true' }), /POPWARDEN_ALLOW_PLAINTEXT_BACKEND_AUTH is set together with backends; .*allow_plaintext_auth/);
    assert.match(loadError('greeting: hi\n'), /^config: backend is required; set it in the config file, with --backend, or with POPWARDEN_BACKEND/);
  });

  it('a route, the default or the auth_http template must name a configured backend', () => {
    assert.match(loadError(TWO_BACKENDS.replace('default: mail1', 'default: mail3')), /routing\.default.*names no configured backend "mail3"; configured: mail1, mail2/);
    assert.match(loadError(TWO_BACKENDS.replace('      backend: mail2\n      rewrite', '      backend: nope\n      rewrite')), /routing\.routes\[0\]\.backend.*names no configured backend "nope"/);
    assert.match(
      loadError(`${TWO_BACKENDS}  auth_http:\n    url: http://127.0.0.1:9/auth\n    unlisted_backend_template: tmpl\n`),
      /unlisted_backend_template.*names no configured backend "tmpl"/,
    );
    assert.match(loadError('backend: 127.0.0.1:1110\nrouting:\n  default: mail1\n'), /configured: default/);
  });

  it('backend names are bounded label values; a route takes user or regex, and no runaway regex', () => {
    assert.match(loadError('backends:\n  "mail 1":\n    address: 127.0.0.1:110\n'), /backends.*must be 1 to 32 letters, digits/);
    assert.match(loadError(`backends:\n  ${'m'.repeat(33)}:\n    address: 127.0.0.1:110\n`), /must be 1 to 32 letters/);
    assert.match(loadError('backends: {}\n'), /backends.*is empty; name at least one backend/);
    assert.match(loadError(TWO_BACKENDS.replace('"^[a-m].*@example\\\\.com$"', '"^(a+)+$"')), /routing\.routes\[2\]\.regex.*is not a regular expression popwarden runs on client input/);
    assert.match(loadError(TWO_BACKENDS.replace('    - user: "*@example.net"\n', '    - user: "*@example.net"\n      regex: x\n')), /needs exactly one of user or regex/);
    assert.match(loadError(TWO_BACKENDS.replace('rewrite: strip_domain', 'rewrite: "%x"')), /must be strip_domain or a template/);
  });

  it('routing.redis_key needs a Redis; auth_http needs an http(s) URL', () => {
    assert.match(loadError(`${TWO_BACKENDS}  redis_key: routes\n`), /routing\.redis_key.*needs a Redis: set redis\.url/);
    const withRedis = load(`${TWO_BACKENDS}  redis_key: routes\nredis:\n  url: redis://127.0.0.1:6379\n`);
    assert.equal(withRedis.config.routing.redisKey, 'routes');
    assert.match(loadError(`${TWO_BACKENDS}  auth_http:\n    url: ftp://x/\n`), /routing\.auth_http\.url.*must be an http:\/\/ or https:\/\/ URL/);
    const http = load(`${TWO_BACKENDS}  auth_http:\n    url: http://127.0.0.1:9/auth\n`).config.routing.authHttp;
    assert.deepEqual(http, { url: 'http://127.0.0.1:9/auth', timeoutMs: 2_000, sendPassword: false, unlistedBackendTemplate: undefined });
    // A switch named like a secret is printed as it is, so the printed file reads back.
    const telling = load(`${TWO_BACKENDS}  auth_http:\n    url: http://127.0.0.1:9/auth\n    send_password: true\n`);
    const printed = redactedConfig(telling.settings) as { routing: { auth_http: { send_password: unknown } } };
    assert.equal(printed.routing.auth_http.send_password, true);
    assert.equal(load(JSON.stringify(printed)).config.routing.authHttp?.sendPassword, true);
  });
});
