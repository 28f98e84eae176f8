import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, redactedConfig, usage } from '../../src/config/load.js';
import { REDACTED, maskSecrets } from '../../src/config/effective-config.js';
import { CONFIG_KEYS } from '../../src/config/schema-keys.js';
import type { Config } from '../../src/config/types.js';
import { fileWriter } from '../harness/scratch.js';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-config-load-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const writeYaml = fileWriter(dir);

const BACKEND = ['--backend', '127.0.0.1:1110'];

function loaded(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const result = loadConfig(argv, env);
  assert.ok(result.action === 'run' || result.action === 'check', `unexpected action ${result.action}`);
  return result;
}

const load = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => loaded(argv, env).config;

/** What --check-config prints for these flags and environment. */
const printed = (argv: string[], env: NodeJS.ProcessEnv = {}) => redactedConfig(loaded(argv, env).settings);

/** Asserts a ConfigError with a one-line message and returns the message. */
function loadError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'E_CONFIG');
    assert.ok(!error.message.includes('\n'), `message has several lines: ${error.message}`);
    // The message is printed to a terminal: no NUL, ESC or other control byte from a file's bytes.
    assert.doesNotMatch(error.message, /[\x00-\x1f\x7f]/, 'message carries a control byte');
    assert.ok(error.message.startsWith('config: '), error.message);
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig defaults', () => {
  it('fills every default from the schema', () => {
    const config = load(BACKEND);
    assert.deepEqual(
      config.listeners.map((l) => l.name),
      ['tls:0.0.0.0:995', 'stls:0.0.0.0:110'],
    );
    assert.deepEqual(config.backends, [{
      name: 'default',
      named: false,
      address: { kind: 'tcp', host: '127.0.0.1', port: 1110 },
      auth: 'auto',
      tls: 'auto',
      caFile: undefined,
      tlsInsecure: false,
      tlsServerName: undefined,
      clientCertFile: undefined,
      clientKeyFile: undefined,
      allowPlaintextAuth: false,
      trustLoopback: undefined, // a loopback backend is trusted on a privileged port only
      sourceAddress: undefined,
      proxyProtocol: 'off',
      xclient: 'off',
      probeIntervalMs: 30_000,
      drain: false,
      rewrite: undefined,
    }]);
    // backend: alone is every user's backend.
    assert.deepEqual(config.routing, { routes: [], mapFile: undefined, redisKey: undefined, authHttp: undefined, defaultBackend: 'default' });
    assert.deepEqual(config.tls, {
      certFile: undefined,
      keyFile: undefined,
      pfxFile: undefined,
      pfxPassphraseFile: undefined,
      certificates: [],
      serverNames: [],
      watchFiles: false,
      minVersion: 'TLSv1.2',
      allowLegacyProtocols: false,
      ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305',
      groups: 'X25519:prime256v1:secp384r1',
      ticketKeysFile: undefined,
    });
    assert.equal(config.greeting, 'popwarden ready');
    assert.equal(config.authFailureDelayMs, 2_000);
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.timeouts, {
      preAuthMs: 60_000,
      idleMs: 600_000,
      tlsHandshakeMs: 10_000,
      proxyProtocolMs: 3_000,
      backendConnectMs: 10_000,
      backendStepMs: 15_000,
      backendAuthMs: 30_000,
      backendIdleMs: 600_000,
      clientWriteStallMs: 600_000,
      shutdownMs: 20_000,
    });
    assert.deepEqual(config.limits, {
      maxInvalidCommands: 5,
      maxCommandsBeforeLogin: 50,
      maxSessionsPerIp: 20,
      maxNewConnectionsPerIp: 10,
      maxNewConnectionsPerIpPerMinute: 60,
      maxProtocolErrorsPerIpPerHour: 10,
      maxHandshakesPerIp: 10,
      maxSessions: 5_000,
      maxHandshakes: 256,
      maxBackendProcesses: 100,
      maxBackendLoginsPerIp: 5,
    });
  });

  it('takes state_dir from systemd STATE_DIRECTORY, else ./.state, and an explicit key over both', () => {
    assert.equal(load(BACKEND).stateDir, resolve('.state'));
    assert.equal(load(BACKEND, { STATE_DIRECTORY: '/var/lib/popwarden:/var/lib/other' }).stateDir, '/var/lib/popwarden');
    assert.equal(load([...BACKEND, '--state-dir', '/srv/pw'], { STATE_DIRECTORY: '/var/lib/popwarden' }).stateDir, '/srv/pw');
  });

  it('requires a backend and says how to set it', () => {
    assert.match(loadError([]), /^config: backend is required; .*--backend.*POPWARDEN_BACKEND/);
  });
});

describe('loadConfig precedence: flag > env > file > default', () => {
  const file = writeYaml(
    ['backend: file.example:110', 'greeting: from file', 'backend_trust_loopback: false', 'listen_tls: ["127.0.0.1:1"]', 'timeouts:', '  idle: 11m', ''].join('\n'),
  );
  const env = {
    POPWARDEN_GREETING: 'from env',
    POPWARDEN_BACKEND_TRUST_LOOPBACK: 'true',
    POPWARDEN_LISTEN_TLS: '127.0.0.1:2',
    POPWARDEN_TIMEOUTS__IDLE: '12m',
  };
  const flags = ['--greeting', 'from flag', '--no-backend-trust-loopback', '--listen-tls', '127.0.0.1:3', '--timeouts-idle', '13m'];

  it('uses the default when nothing is set', () => {
    const config = load(BACKEND);
    assert.equal(config.greeting, 'popwarden ready');
    assert.equal(config.timeouts.idleMs, 600_000);
  });

  it('file beats default', () => {
    const config = load(['--config', file]);
    assert.equal(config.greeting, 'from file');
    assert.deepEqual(config.backends[0]!.address, { kind: 'tcp', host: 'file.example', port: 110 });
    assert.equal(config.backends[0]!.trustLoopback, false);
    assert.deepEqual(config.listeners.filter((l) => l.kind === 'tls').map((l) => l.port), [1]);
    assert.equal(config.timeouts.idleMs, 11 * 60_000);
  });

  it('env beats file', () => {
    const config = load(['--config', file], env);
    assert.equal(config.greeting, 'from env');
    assert.equal(config.backends[0]!.trustLoopback, true);
    assert.deepEqual(config.listeners.filter((l) => l.kind === 'tls').map((l) => l.port), [2]);
    assert.equal(config.timeouts.idleMs, 12 * 60_000);
  });

  it('flag beats env, and a list flag replaces the list instead of appending', () => {
    const config = load(['--config', file, ...flags], env);
    assert.equal(config.greeting, 'from flag');
    assert.equal(config.backends[0]!.trustLoopback, false);
    assert.deepEqual(config.listeners.filter((l) => l.kind === 'tls').map((l) => l.port), [3]);
    assert.equal(config.timeouts.idleMs, 13 * 60_000);
    // Keys nobody overrode keep the file's value.
    assert.deepEqual(config.backends[0]!.address, { kind: 'tcp', host: 'file.example', port: 110 });
  });
});

describe('loadConfig unknown names', () => {
  it('rejects an unknown file key with file:line and a hint', () => {
    const file = writeYaml('backend: 127.0.0.1:110\ntimeouts:\n  idel: 10m\n');
    assert.equal(
      loadError(['--config', file]),
      `config: ${file}:3: unknown key "timeouts.idel"; did you mean "timeouts.idle"?`,
    );
  });

  it('points a nested key written at the top level to its section', () => {
    const file = writeYaml('backend: 127.0.0.1:110\nidle: 10m\n');
    assert.match(loadError(['--config', file]), /:2: unknown key "idle"; did you mean "timeouts.idle"\?$/);
  });

  it('reports a typo before the "required" error it causes', () => {
    const file = writeYaml('backnd: 127.0.0.1:110\n');
    assert.match(loadError(['--config', file]), /unknown key "backnd"; did you mean "backend"\?/);
  });

  it('rejects an unknown key with no near match without guessing', () => {
    const file = writeYaml('backend: 127.0.0.1:110\nredis_url: x\n');
    assert.match(loadError(['--config', file]), /unknown key "redis_url"; remove it/);
  });

  it('rejects an unknown flag, with a hint when close', () => {
    assert.equal(loadError([...BACKEND, '--greting', 'x']), 'config: unknown flag --greting; did you mean --greeting?');
    assert.match(loadError([...BACKEND, '--frobnicate']), /unknown flag --frobnicate; see popwarden --help/);
    assert.match(loadError([...BACKEND, 'stray']), /unexpected argument "stray"/);
  });

  it('ignores an unknown POPWARDEN_ environment variable with a warning, with a hint when close', () => {
    const warningsFor = (env: NodeJS.ProcessEnv): readonly string[] => {
      const result = loadConfig(BACKEND, env);
      assert.ok(result.action === 'run', result.action);
      return result.warnings;
    };
    assert.deepEqual(warningsFor({ POPWARDEN_BACKEND_TLS_INSECUR: '1' }), [
      'ignoring unknown environment variable POPWARDEN_BACKEND_TLS_INSECUR; did you mean POPWARDEN_BACKEND_TLS_INSECURE?',
    ]);
    assert.match(warningsFor({ POPWARDEN_WHATEVER_ELSE_ENTIRELY: 'x' }).join(), /^ignoring unknown environment variable POPWARDEN_WHATEVER_ELSE_ENTIRELY; unset it/);
    assert.match(warningsFor({ POPWARDEN_TIMEOUTS_IDLE: '10m' }).join(), /did you mean POPWARDEN_TIMEOUTS__IDLE\?$/);
    // The shared prefix must not make unrelated names look close.
    assert.match(warningsFor({ POPWARDEN_METRICS: 'x' }).join(), /POPWARDEN_METRICS; unset it/);
    // The typo'd setting is not applied, the rest of the config is.
    assert.equal(load(BACKEND, { POPWARDEN_GREETNG: 'typo', POPWARDEN_LOG_LEVEL: 'warn' }).greeting, 'popwarden ready');
    assert.equal(load(BACKEND, { POPWARDEN_GREETNG: 'typo', POPWARDEN_LOG_LEVEL: 'warn' }).logLevel, 'warn');
    assert.deepEqual(warningsFor({}), []);
  });

  it('names Kubernetes service variables as such, in one warning', () => {
    const result = loadConfig(BACKEND, {
      POPWARDEN_PORT: 'tcp://10.0.0.7:995',
      POPWARDEN_PORT_995_TCP: 'tcp://10.0.0.7:995',
      POPWARDEN_PORT_995_TCP_PROTO: 'tcp',
      POPWARDEN_PORT_995_TCP_PORT: '995',
      POPWARDEN_PORT_995_TCP_ADDR: '10.0.0.7',
      POPWARDEN_SERVICE_HOST: '10.0.0.7',
      POPWARDEN_SERVICE_PORT: '995',
      POPWARDEN_SERVICE_PORT_POP3S: '995',
    });
    assert.ok(result.action === 'run');
    assert.equal(result.warnings.length, 1);
    assert.match(result.warnings[0] ?? '', /^ignoring POPWARDEN_PORT, .*POPWARDEN_SERVICE_PORT_POP3S: Kubernetes service variables, not settings/);
  });

  it('still refuses POPWARDEN_CONFIG: ignoring it would run without the intended file', () => {
    assert.match(loadError(BACKEND, { POPWARDEN_CONFIG: '/etc/popwarden.yaml' }), /POPWARDEN_CONFIG is not supported; give the config file with --config FILE$/);
  });

  it('ignores environment variables without the prefix', () => {
    assert.equal(load(BACKEND, { POPWARDENX: '1', HOME: '/root', PATH: '/bin' }).greeting, 'popwarden ready');
  });
});

describe('loadConfig value checks', () => {
  it("rejects an idle timeout below RFC 1939's 10 minutes from every source, accepts exactly 10m", () => {
    const expected = `is below RFC 1939's 10 minute minimum; use 10m or more`;
    assert.equal(loadError([...BACKEND, '--timeouts-idle', '9m']), `config: --timeouts-idle "9m" ${expected}`);
    assert.equal(loadError(BACKEND, { POPWARDEN_TIMEOUTS__IDLE: '599s' }), `config: POPWARDEN_TIMEOUTS__IDLE "599s" ${expected}`);
    const file = writeYaml('backend: 127.0.0.1:110\ntimeouts:\n  idle: 5m\n');
    assert.equal(loadError(['--config', file]), `config: ${file}:3: timeouts.idle "5m" ${expected}`);
    assert.equal(load([...BACKEND, '--timeouts-idle', '10m']).timeouts.idleMs, 600_000);
    assert.equal(load([...BACKEND, '--timeouts-idle', '600000ms']).timeouts.idleMs, 600_000);
  });

  it('rejects a duration without a unit, also when YAML made it a number', () => {
    assert.match(loadError([...BACKEND, '--auth-failure-delay', '2']), /^config: --auth-failure-delay "2" has no unit/);
    const file = writeYaml('backend: 127.0.0.1:110\ntimeouts:\n  pre_auth: 60\n');
    assert.match(loadError(['--config', file]), /:3: timeouts.pre_auth 60 has no unit; write it with one, e.g. "60s"$/);
  });

  it('reads the process-wide bounds from flags and the environment, 0 for none, and refuses negatives', () => {
    const config = load([...BACKEND, '--limits-max-sessions', '2000'], { POPWARDEN_LIMITS__MAX_HANDSHAKES: '0' });
    assert.equal(config.limits.maxSessions, 2_000);
    assert.equal(config.limits.maxHandshakes, 0);
    assert.equal(loadError([...BACKEND, '--limits-max-sessions=-1']), 'config: --limits-max-sessions -1 must be at least 0');
  });

  it('allows a zero auth failure delay', () => {
    assert.equal(load([...BACKEND, '--auth-failure-delay', '0s']).authFailureDelayMs, 0);
  });

  it('takes a bare 0 for any duration, from a flag, the environment and a YAML number', () => {
    assert.equal(load([...BACKEND, '--auth-failure-delay', '0']).authFailureDelayMs, 0);
    assert.equal(load(BACKEND, { POPWARDEN_BACKEND_PROBE_INTERVAL: '0' }).metrics.backendProbeIntervalMs, 0);
    const file = writeYaml('backend: 127.0.0.1:110\nauth_failure_delay: 0\ntimeouts:\n  pre_auth: 0\nredis:\n  command_timeout: "0"\n');
    const config = load(['--config', file]);
    assert.equal(config.authFailureDelayMs, 0);
    assert.equal(config.timeouts.preAuthMs, 0);
    assert.equal(config.redis.commandTimeoutMs, 0);
    // Only zero: any other bare number still needs its unit.
    assert.match(loadError([...BACKEND, '--auth-failure-delay', '1']), /has no unit/);
  });

  it('reads IPv6 listeners and backend', () => {
    const config = load(['--backend', '[::1]:1110', '--listen-tls', '[::1]:0', '--listen-stls', '[::]:0']);
    assert.deepEqual(config.listeners, [
      { kind: 'tls', host: '::1', port: 0, name: 'tls:[::1]:0' },
      { kind: 'stls', host: '::', port: 0, name: 'stls:[::]:0' },
    ]);
    assert.deepEqual(config.backends[0]!.address, { kind: 'tcp', host: '::1', port: 1110 });
  });

  it('refuses port 0 for the backend but not for listeners', () => {
    assert.match(loadError(['--backend', '127.0.0.1:0']), /--backend "127.0.0.1:0" has port 0, out of range; use 1 to 65535/);
  });

  it('reads lists from comma-separated env and repeated or comma-separated flags', () => {
    const fromEnv = load(BACKEND, { POPWARDEN_LISTEN_TLS: ' 127.0.0.1:0 , [::1]:0 ', POPWARDEN_LISTEN_STLS: '' });
    assert.deepEqual(fromEnv.listeners.map((l) => l.name), ['tls:127.0.0.1:0', 'tls:[::1]:0']);
    const fromFlags = load([...BACKEND, '--listen-stls', '127.0.0.1:0', '--listen-stls', '127.0.0.2:0,127.0.0.3:0', '--listen-tls', '']);
    assert.deepEqual(fromFlags.listeners.map((l) => l.name), ['stls:127.0.0.1:0', 'stls:127.0.0.2:0', 'stls:127.0.0.3:0']);
  });

  it('names the bad list entry and its source', () => {
    assert.equal(
      loadError(BACKEND, { POPWARDEN_LISTEN_TLS: '127.0.0.1:995,::1:995' }),
      'config: POPWARDEN_LISTEN_TLS "::1:995" looks like a bare IPv6 address; put it in brackets, e.g. [::1]:995',
    );
    const file = writeYaml('backend: 127.0.0.1:110\nlisten_stls:\n  - 127.0.0.1:110\n  - 127.0.0.1:70000\n');
    assert.match(loadError(['--config', file]), /:4: listen_stls\[1\] "127.0.0.1:70000" has port 70000, out of range/);
  });

  it('rejects both listener lists empty, but allows one', () => {
    assert.equal(
      loadError(BACKEND, { POPWARDEN_LISTEN_TLS: '', POPWARDEN_LISTEN_STLS: '' }),
      'config: listen_tls and listen_stls are both empty; popwarden needs at least one listener',
    );
    const file = writeYaml('backend: 127.0.0.1:110\nlisten_tls: []\nlisten_stls:\n  - 127.0.0.1:1\n  - 127.0.0.1:1\n');
    assert.match(loadError(['--config', file]), /:5: listen_stls\[1\] "127.0.0.1:1" is listed twice/);
    assert.equal(load(BACKEND, { POPWARDEN_LISTEN_STLS: '' }).listeners.length, 1);
  });

  it('reads a listener behind a load balancer, and refuses its PROXY options half set', () => {
    const file = writeYaml(
      'backend: 127.0.0.1:110\nlisten_tls:\n  - 127.0.0.1:995\n  - {address: "127.0.0.1:1995", proxy_protocol: true, proxy_protocol_trusted: [10.1.0.0/16, "2001:db8::1"]}\n',
    );
    const listeners = load(['--config', file]).listeners.filter((l) => l.kind === 'tls');
    assert.deepEqual(listeners.map((l) => [l.name, l.proxyProtocol]), [
      ['tls:127.0.0.1:995', undefined],
      ['tls:127.0.0.1:1995', { trusted: ['10.1.0.0/16', '2001:db8::1'] }],
    ]);
    const untrusted = writeYaml('backend: 127.0.0.1:110\nlisten_stls:\n  - {address: "127.0.0.1:110", proxy_protocol: true}\n');
    assert.match(loadError(['--config', untrusted]), /listen_stls\[0\]\.proxy_protocol_trusted .*is empty; list the load balancers' addresses/);
    const unused = writeYaml('backend: 127.0.0.1:110\nlisten_stls:\n  - {address: "127.0.0.1:110", proxy_protocol_trusted: [10.0.0.1]}\n');
    assert.match(loadError(['--config', unused]), /proxy_protocol_trusted .*is set but proxy_protocol is not true/);
    const typo = writeYaml('backend: 127.0.0.1:110\nlisten_stls:\n  - {address: "127.0.0.1:110", proxy_protocl: true}\n');
    assert.match(loadError(['--config', typo]), /proxy_protocl/);
    const neither = writeYaml('backend: 127.0.0.1:110\nlisten_stls:\n  - 110\n');
    assert.match(loadError(['--config', neither]), /:3: listen_stls\[0\] 110 must be HOST:PORT, or a mapping with address: HOST:PORT$/);
  });

  it('rejects the same address twice, but not two port-0 listeners', () => {
    assert.match(loadError([...BACKEND, '--listen-tls', '127.0.0.1:995', '--listen-stls', '127.0.0.1:995']), /^config: --listen-stls "127.0.0.1:995" is listed twice/);
    assert.equal(load([...BACKEND, '--listen-tls', '127.0.0.1:0,127.0.0.1:0']).listeners.length, 3);
  });

  it('reads booleans from env words and plain flags', () => {
    assert.equal(load(BACKEND, { POPWARDEN_BACKEND_TLS_INSECURE: 'yes' }).backends[0]!.tlsInsecure, true);
    assert.equal(load(BACKEND, { POPWARDEN_BACKEND_TRUST_LOOPBACK: '0' }).backends[0]!.trustLoopback, false);
    assert.equal(load([...BACKEND, '--allow-plaintext-backend-auth']).backends[0]!.allowPlaintextAuth, true);
    assert.equal(
      loadError(BACKEND, { POPWARDEN_BACKEND_TLS_INSECURE: 'maybe' }),
      'config: POPWARDEN_BACKEND_TLS_INSECURE "maybe" must be true or false',
    );
    assert.match(loadError([...BACKEND, '--backend-tls-insecure=yes']), /--backend-tls-insecure is an on\/off flag/);
    assert.match(loadError([...BACKEND, '--backend-trust-loopback', '--no-backend-trust-loopback']), /contradict/);
    const file = writeYaml('backend: 127.0.0.1:110\nbackend_tls_insecure: "yes"\n');
    assert.match(loadError(['--config', file]), /:2: backend_tls_insecure "yes" must be true or false$/);
  });

  it('checks enums, integers and the greeting', () => {
    assert.match(loadError([...BACKEND, '--backend-auth', 'md5']), /--backend-auth "md5" must be one of: auto, apop, cram-md5, plain, login, user$/);
    assert.match(loadError([...BACKEND, '--limits-max-invalid-commands', '0']), /0 must be at least 1$/);
    assert.match(loadError(BACKEND, { POPWARDEN_LIMITS__MAX_INVALID_COMMANDS: 'lots' }), /POPWARDEN_LIMITS__MAX_INVALID_COMMANDS "lots" must be a whole number$/);
    assert.equal(load([...BACKEND, '--limits-max-invalid-commands', '100']).limits.maxInvalidCommands, 100);
    // A budget a real client could not log in with is a mistake, not a policy.
    assert.match(loadError([...BACKEND, '--limits-max-commands-before-login', '5']), /must be 0 \(no bound\) or at least 10/);
    assert.equal(load([...BACKEND, '--limits-max-commands-before-login', '0']).limits.maxCommandsBeforeLogin, 0);
    assert.match(loadError([...BACKEND, '--greeting', 'hi <1.2@host>']), /--greeting "hi <1.2@host>" must be printable ASCII without "<" or ">"/);
    assert.match(loadError([...BACKEND, '--greeting', 'x'.repeat(201)]), /is longer than 200 characters$/);
    assert.match(loadError([...BACKEND, '--greeting', 'tab\there']), /must be printable ASCII/);
    assert.match(loadError([...BACKEND, '--backend-source-address', 'eth0']), /"eth0" is not an IP address/);
  });

  it('reports YAML syntax errors with file:line:col', () => {
    const file = writeYaml('backend: 127.0.0.1:110\ntimeouts:\n  idle: [10m\n');
    assert.match(loadError(['--config', file]), new RegExp(`^config: ${file}:\\d+:\\d+: YAML syntax error: `));
    const unquotedIpv6 = writeYaml('backend: 127.0.0.1:110\nlisten_tls:\n  - [::1]:995\n');
    assert.match(loadError(['--config', unquotedIpv6]), /:3:\d+: YAML syntax error: .*; quote IPv6 addresses, e.g. "\[::1\]:995"$/);
    const list = writeYaml('- a\n- b\n');
    assert.match(loadError(['--config', list]), /must be a mapping of keys .* not a list/);
    assert.match(loadError(['--config', join(dir, 'missing.yaml')]), /cannot read config file .*missing.yaml: no such file/);
  });

  it('refuses an alias YAML cannot resolve, or one that expands without bound, as a ConfigError (found by the config fuzz target)', () => {
    const dangling = writeYaml('*\0');
    assert.match(loadError(['--config', dangling]), new RegExp(`^config: ${dangling}: YAML error: Unresolved alias .*: \\\\x00$`));
    const laughs = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const name of 'bcdefg') laughs.push(`${name}: &${name} [${Array(9).fill(`*${String.fromCharCode(name.charCodeAt(0) - 1)}`).join(',')}]`);
    const bomb = writeYaml(`${laughs.join('\n')}\n`);
    assert.match(loadError(['--config', bomb]), new RegExp(`^config: ${bomb}: YAML error: Excessive alias count`));
  });

  it('accepts an empty config file', () => {
    assert.equal(load(['--config', writeYaml(''), ...BACKEND]).greeting, 'popwarden ready');
  });
});

describe('loadConfig referenced files', () => {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  writeFileSync(cert, 'not checked here, only that it is readable');
  writeFileSync(key, 'likewise');

  it('requires cert and key together', () => {
    assert.match(loadError([...BACKEND, '--cert', cert]), /^config: --cert ".*cert.pem" is set but key is not; give both/);
    assert.match(loadError([...BACKEND, '--key', key]), /--key ".*key.pem" is set but cert is not/);
  });

  it('accepts readable files and resolves them to absolute paths', () => {
    const config = load([...BACKEND, '--cert', cert, '--key', key, '--backend-ca', cert]);
    assert.equal(config.tls.certFile, cert);
    assert.equal(config.tls.keyFile, key);
    assert.equal(config.backends[0]!.caFile, cert);
  });

  it('rejects missing or unreadable files, naming the key and path', () => {
    const missing = join(dir, 'nope.pem');
    assert.match(loadError([...BACKEND, '--cert', missing, '--key', key]), new RegExp(`^config: cert ${missing} does not exist; `));
    assert.match(loadError([...BACKEND, '--backend-ca', dir]), /backend_ca .* is not a regular file/);
    if (process.getuid?.() !== 0) {
      const secret = join(dir, 'unreadable.pem');
      writeFileSync(secret, 'x');
      chmodSync(secret, 0o000);
      assert.match(loadError([...BACKEND, '--cert', cert, '--key', secret]), /key .* is not readable by this user/);
    }
  });
});

describe('loadConfig result', () => {
  it('is deeply frozen', () => {
    const config = load([...BACKEND, '--listen-tls', '127.0.0.1:0']);
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.listeners));
    assert.ok(Object.isFrozen(config.listeners[0]));
    assert.ok(Object.isFrozen(config.backends[0]));
    assert.ok(Object.isFrozen(config.timeouts));
    assert.throws(() => {
      (config.timeouts as { idleMs: number }).idleMs = 1;
    }, TypeError);
    assert.throws(() => {
      (config.listeners as ListenerArray).push(config.listeners[0]);
    }, TypeError);
  });

  it('reports the action: run, check, help, version', () => {
    assert.equal(loadConfig(BACKEND, {}).action, 'run');
    assert.equal(loadConfig([...BACKEND, '--check-config'], {}).action, 'check');
    assert.equal(loadConfig([...BACKEND, '-t'], {}).action, 'check');
    // --help works even when the rest of the configuration would not load.
    assert.equal(loadConfig(['--help'], { POPWARDEN_NOT_A_KEY: 'x' }).action, 'help');
    assert.equal(loadConfig(['--version'], {}).action, 'version');
  });
});

type ListenerArray = unknown[];

describe('redactedConfig', () => {
  it('prints a config file that loads back to the same Config', () => {
    const original = loaded(
      ['--backend', '[2001:db8::1]:110', '--listen-tls', '[::1]:0', '--listen-stls', '', '--backend-tls', 'starttls', '--backend-tls-servername', 'pop.example', '--backend-source-address', '127.0.0.1', '--auth-failure-delay', '1500ms', '--timeouts-idle', '1h', '--log-level', 'warn'],
      { STATE_DIRECTORY: '/var/lib/popwarden' },
    );
    const file = writeYaml(stringify(redactedConfig(original.settings)));
    assert.deepEqual(load(['--config', file]), original.config);
  });

  it('prints every key back in its own syntax: a file with all non-secret keys set loads back to the same Config', () => {
    const pem = join(dir, 'round-trip.pem');
    writeFileSync(pem, 'x');
    const file = writeYaml(
      [
        'listen_tls: ["[::1]:0"]', 'listen_stls: ["127.0.0.1:0", {address: "127.0.0.1:1", proxy_protocol: true, proxy_protocol_trusted: [10.0.0.0/8]}]', 'backend: pop.example:1110', 'backend_auth: apop', 'backend_tls: implicit',
        `backend_ca: ${pem}`, 'backend_tls_insecure: true', 'backend_tls_servername: pop.example', `backend_tls_cert: ${pem}`, `backend_tls_key: ${pem}`,
        'allow_plaintext_backend_auth: true', 'backend_trust_loopback: false', 'backend_source_address: "::1"', 'backend_proxy_protocol: v2', 'backend_xclient: auto', `cert: ${pem}`, `key: ${pem}`,
        `state_dir: ${dir}`, 'greeting: hello', 'auth_failure_delay: 1500ms', 'log_level: warn', 'metrics_listen: "[::1]:0"', 'backend_probe_interval: 0',
        'tls:', `  certificates: [{names: [Mail.Example.org, "*.example.net"], cert: ${pem}, key: ${pem}}]`, '  server_names: [mail.example.org]',
        '  watch_files: true', '  min_version: TLSv1.3', '  ciphers: HIGH', '  groups: X25519', `  ticket_keys_file: ${pem}`,
        'timeouts: {pre_auth: 90s, idle: 1h, tls_handshake: 5s, proxy_protocol: 2s, backend_connect: 1s, backend_step: 2s, backend_auth: 3s, backend_idle: 4m, client_write_stall: 5m, shutdown: 45s}',
        'limits: {max_invalid_commands: 3, max_commands_before_login: 12, max_sessions_per_ip: 0, max_new_connections_per_ip: 7, max_new_connections_per_ip_per_minute: 11, max_handshakes_per_ip: 8, max_sessions: 9, max_handshakes: 0}',
        'redis: {sentinels: ["127.0.0.1:26379", "[::1]:26380"], name: mymaster, username: pw, tls: true, command_timeout: 250ms, connect_timeout: 3s}',
        'rate_limit:', '  key_prefix: rt', '  username_canonical: {lower_case: false, realm_separators: "@"}', '  ipv6_prefix: 48',
        '  user_ip: {max_failures: 3, window: 7d, block: 2h}', '  ip: {max_failures: 0, window: 1s, block: 1s}', '  user: {max_failures: 4, window: 90m, block: 1d}',
        '  trusted_for: 0s', `  hmac_key_file: ${pem}`, '  allow: [192.0.2.0/24]', '  deny: ["2001:db8::/32"]', '  on_store_failure: fail_closed',
        '',
      ].join('\n'),
    );
    const original = loaded(['--config', file]);
    const raw = redactedConfig(original.settings);
    assert.deepEqual(load(['--config', writeYaml(stringify(raw))]), original.config);
    // Written as a person would: durations in their shortest unit, addresses as HOST:PORT.
    assert.deepEqual(raw.timeouts, { pre_auth: '90s', idle: '1h', tls_handshake: '5s', proxy_protocol: '2s', backend_connect: '1s', backend_step: '2s', backend_auth: '3s', backend_idle: '4m', client_write_stall: '5m', shutdown: '45s' });
    assert.deepEqual([raw.backend, raw.metrics_listen, raw.redis?.sentinels], ['pop.example:1110', '[::1]:0', ['127.0.0.1:26379', '[::1]:26380']]);
    assert.deepEqual(raw.listen_stls, ['127.0.0.1:0', { address: '127.0.0.1:1', proxy_protocol: true, proxy_protocol_trusted: ['10.0.0.0/8'] }]);
  });

  it('mentions every schema key for a fully populated config (no key forgotten in the mapping)', () => {
    const pem = join(dir, 'any.pem');
    writeFileSync(pem, 'x');
    const common = [
      ...BACKEND,
      '--cert', pem, '--key', pem, '--backend-ca', pem, '--backend-tls-cert', pem, '--backend-tls-key', pem,
      '--backend-tls-servername', 'x.example', '--backend-source-address', '::1', '--state-dir', dir,
      '--rate-limit-hmac-key-file', pem, '--redis-password-file', pem, '--redis-username', 'pw',
      '--tls-ticket-keys-file', pem, '--backend-trust-loopback', '--routing-map-file', pem, '--routing-default', 'default',
      '--routing-auth-http-url', 'http://127.0.0.1:9/auth', '--routing-auth-http-unlisted-backend-template', 'default',
    ];
    // redis.url, redis.sentinels (+ name) and redis.cluster exclude each other: one config each.
    const raws = [
      ['--redis-url', 'redis://127.0.0.1:6379'],
      ['--redis-sentinels', '127.0.0.1:26379', '--redis-name', 'mymaster'],
      ['--redis-cluster', '127.0.0.1:7000'],
    ].map((redis) => printed([...common, ...redis]) as Record<string, unknown>);
    // tls.pfx excludes cert/key.
    const withoutPair = common.filter((_, i) => !['--cert', '--key'].includes(common[i] ?? '') && !['--cert', '--key'].includes(common[i - 1] ?? ''));
    raws.push(printed([...withoutPair, '--tls-pfx', pem, '--tls-pfx-passphrase-file', pem]) as Record<string, unknown>);
    // rate_limit.username_canonical: realm_separators or pattern.
    raws.push(printed([...common, '--rate-limit-username-canonical-pattern', '^([^@]+)']) as Record<string, unknown>);
    // backends: excludes backend and the backend_* keys; routing.redis_key needs a Redis.
    raws.push(printed(['--config', writeYaml('backends:\n  mail1:\n    address: 127.0.0.1:110\nrouting:\n  redis_key: r\nredis:\n  url: redis://127.0.0.1:6379\n')]) as Record<string, unknown>);
    for (const key of CONFIG_KEYS) {
      const values = raws.map((raw) => key.path.reduce<unknown>((node, part) => (node as Record<string, unknown>)?.[part], raw));
      assert.ok(values.some((value) => value !== undefined), `${key.name} missing from redactedConfig output`);
    }
  });

  it('masks a Redis URL password up to the last @, as the URL parser reads it', () => {
    const printedUrl = (url: string) => printed([...BACKEND, '--redis-url', url]).redis?.url;
    assert.equal(printedUrl('redis://:pass@dor@127.0.0.1:6390/2'), `redis://:${REDACTED}@127.0.0.1:6390/2`);
    assert.equal(printedUrl('redis://app:p:a@s@s@redis.example:6379'), `redis://app:${REDACTED}@redis.example:6379`);
    assert.equal(printedUrl('rediss://:simple@127.0.0.1:6380'), `rediss://:${REDACTED}@127.0.0.1:6380`);
    // No colon: the URL parser calls it a username, but people put passwords there; hide it whole.
    assert.equal(printedUrl('redis://s3cret@127.0.0.1:6379'), `redis://${REDACTED}@127.0.0.1:6379`);
    assert.equal(printedUrl('redis://127.0.0.1:6379/0?name=x@y'), 'redis://127.0.0.1:6379/0?name=x@y');
  });

  it('masks keys marked secret and keys whose names look secret', () => {
    const raw = { redis: { url: 'redis://x', password: 'hunter2' }, api: { token_file: '/x' }, plain: 'visible' };
    const masked = maskSecrets(structuredClone(raw), [
      { path: ['redis', 'url'], secret: true },
      { path: ['redis', 'password'], secret: false },
      { path: ['api', 'token_file'], secret: false },
      { path: ['plain'], secret: false },
    ]);
    assert.deepEqual(masked, { redis: { url: REDACTED, password: REDACTED }, api: { token_file: REDACTED }, plain: 'visible' });
  });
});

describe('usage', () => {
  it('lists every key as a flag and an env var', () => {
    const text = usage();
    for (const key of CONFIG_KEYS) {
      assert.ok(text.includes(`--${key.flag}`), key.flag);
      assert.ok(text.includes(key.env), key.env);
    }
  });

  it('shows what each flag takes: names are not addresses, files and durations say so', () => {
    const text = usage();
    for (const flag of ['--tls-server-names NAME ', '--tls-pfx FILE ', '--tls-pfx-passphrase-file FILE ', '--tls-ticket-keys-file FILE ',
      '--backend-probe-interval DURATION ', '--metrics-listen HOST:PORT|off ', '--listen-tls HOST:PORT ',
      '--backend HOST:PORT|unix:PATH|exec:PROGRAM ']) {
      assert.ok(text.includes(flag), flag);
    }
  });
});
