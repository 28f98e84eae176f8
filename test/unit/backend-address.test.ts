/**
 * The backend's three forms (issue 12): HOST:PORT, `unix:/path`, `exec:/program args` and the
 * structured exec mapping, from flags, environment and YAML; the one-line refusals; and
 * --check-config writing each back so that loading the printed file gives the same backend.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, redactedConfig } from '../../src/config/load.js';
import type { BackendAddress, Config } from '../../src/config/types.js';

const dir = mkdtempSync(join(tmpdir(), 'popwarden-backend-address-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const yamlFile = (text: string): string => {
  const path = join(dir, `config-${++files}.yaml`);
  writeFileSync(path, text);
  return path;
};

function loaded(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const result = loadConfig(argv, env);
  assert.ok(result.action === 'run' || result.action === 'check');
  return result;
}
const load = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => loaded(argv, env).config;

function loadError(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(argv, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail('the config loaded');
}

/** Loads what --check-config prints for `argv` and returns the backend both times. */
function roundTrip(argv: string[]): { first: BackendAddress; again: BackendAddress; printed: unknown } {
  const first = loaded(argv);
  const printed = redactedConfig(first.settings);
  const again = load(['--config', yamlFile(stringify(printed))]);
  return { first: first.config.backends[0]!.address, again: again.backends[0]!.address, printed: (printed as Record<string, unknown>)['backend'] };
}

describe('backend forms', () => {
  it('unix: an absolute socket path, from a flag or the environment', () => {
    assert.deepEqual(load(['--backend', 'unix:/run/ipop3d.sock']).backends[0]!.address, { kind: 'unix', path: '/run/ipop3d.sock' });
    assert.deepEqual(load([], { POPWARDEN_BACKEND: 'unix:/run/x.sock' }).backends[0]!.address, { kind: 'unix', path: '/run/x.sock' });
  });

  it('exec: the command line split on whitespace, no shell', () => {
    assert.deepEqual(load(['--backend', 'exec:/usr/sbin/ipop3d  -x\targ "quoted word"']).backends[0]!.address, {
      kind: 'exec',
      command: '/usr/sbin/ipop3d',
      args: ['-x', 'arg', '"quoted', 'word"'],
      environment: {},
      cwd: undefined,
    });
  });

  it('the structured exec form in YAML: command, args, environment, working directory', () => {
    const file = yamlFile(
      ['backend:', '  exec:', '    command: /usr/sbin/in.qpopper', '    args: ["-s", "two words"]', '    environment: {LANG: C, TZ: UTC}', '    cwd: /var/spool/mail', ''].join('\n'),
    );
    assert.deepEqual(load(['--config', file]).backends[0]!.address, {
      kind: 'exec',
      command: '/usr/sbin/in.qpopper',
      args: ['-s', 'two words'],
      environment: { LANG: 'C', TZ: 'UTC' },
      cwd: '/var/spool/mail',
    });
  });

  it('HOST:PORT is unchanged', () => {
    assert.deepEqual(load(['--backend', 'mail.example:110']).backends[0]!.address, { kind: 'tcp', host: 'mail.example', port: 110 });
  });

  it('limits.max_backend_processes: default 100, at least 1', () => {
    assert.equal(load(['--backend', 'exec:/bin/true']).limits.maxBackendProcesses, 100);
    assert.equal(load(['--backend', 'exec:/bin/true', '--limits-max-backend-processes', '3']).limits.maxBackendProcesses, 3);
    assert.match(loadError(['--backend', 'exec:/bin/true', '--limits-max-backend-processes', '0']), /--limits-max-backend-processes 0 must be at least 1/);
  });
});

describe('backend refusals: one line naming the problem', () => {
  it('a relative program or socket path', () => {
    assert.match(loadError(['--backend', 'exec:ipop3d']), /--backend "exec:ipop3d" runs "ipop3d", a relative path; give the program's absolute path/);
    assert.match(loadError(['--backend', 'unix:run/x.sock']), /relative socket path; write unix:\/absolute\/path.sock/);
    assert.match(loadError(['--backend', 'exec:']), /names no program/);
  });

  it('a HOST:PORT mistake also names the other forms', () => {
    assert.match(loadError(['--backend', 'mailhost']), /has no port; write HOST:PORT.*or unix:\/path.sock, or exec:\/path\/to\/server/);
  });

  it('the structured form: unknown keys, bad variable names, a relative command', () => {
    assert.match(loadError(['--config', yamlFile('backend:\n  exec:\n    command: /bin/true\n    argv: [x]\n')]), /argv/);
    assert.match(loadError(['--config', yamlFile('backend:\n  exec:\n    command: /bin/true\n    environment: {"A-B": x}\n')]), /not an environment variable name/);
    assert.match(loadError(['--config', yamlFile('backend:\n  exec:\n    command: bin/true\n')]), /relative path/);
    assert.match(loadError(['--config', yamlFile('backend:\n  exec:\n    args: [x]\n')]), /command/);
  });

  it('backend_source_address with a socket or a program', () => {
    assert.match(loadError(['--backend', 'unix:/run/x.sock', '--backend-source-address', '127.0.0.2']), /--backend-source-address "127.0.0.2" applies only to a HOST:PORT backend, not to unix:/);
  });

  it('no backend at all: still "is required"', () => {
    assert.match(loadError([]), /^config: backend is required; /);
  });
});

describe('--check-config writes the backend back in a form that loads to the same', () => {
  it('unix: and a simple exec: as one line', () => {
    for (const text of ['unix:/run/ipop3d.sock', 'exec:/usr/sbin/ipop3d -x arg', '[::1]:1110']) {
      const { first, again, printed } = roundTrip(['--backend', text]);
      assert.equal(printed, text);
      assert.deepEqual(again, first);
    }
  });

  it('an exec: with an environment, a working directory or spaces in an argument as the mapping', () => {
    const file = yamlFile('backend:\n  exec:\n    command: /usr/sbin/ipop3d\n    args: ["a b"]\n    environment: {LANG: C}\n    cwd: /tmp\n');
    const { first, again, printed } = roundTrip(['--config', file]);
    assert.deepEqual(printed, { exec: { command: '/usr/sbin/ipop3d', args: ['a b'], environment: { LANG: 'C' }, cwd: '/tmp' } });
    assert.deepEqual(again, first);
  });
});
