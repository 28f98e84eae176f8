/**
 * The popwarden binary as an operator meets it: spawn `node --import tsx src/cli.ts`, look only
 * at the exit status, stdout and stderr.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { generateSelfSigned } from '../../src/certs/self-signed.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src', 'cli.ts');
/** Resolved here, because the child runs in a temp dir where a bare `--import tsx` would not be found. */
const TSX = import.meta.resolve('tsx');
const dir = mkdtempSync(join(tmpdir(), 'popwarden-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The caller's POPWARDEN_* variables would change what is being tested; only ours get through. */
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('POPWARDEN_') && name !== 'STATE_DIRECTORY'));
  // Parallel runs must not fight over the default metrics port; tests that care set their own.
  return { ...env, POPWARDEN_METRICS_LISTEN: 'off', ...extra };
}

interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Called with each stdout chunk; may signal the child. */
  readonly onStdout?: (text: string, child: ReturnType<typeof spawn>) => void;
  readonly timeoutMs?: number;
}

function runCli(args: string[], options: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, ...args], { cwd: dir, env: cleanEnv(options.env ?? {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      options.onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`popwarden ${args.join(' ')} did not exit; stdout: ${stdout} stderr: ${stderr}`));
    }, options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Exit 1 and exactly one stderr line starting "popwarden: "; returns that line. */
function assertOneLineFailure(run: Run): string {
  assert.equal(run.code, 1, `exit status; stderr: ${run.stderr}`);
  const lines = run.stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `expected one stderr line, got: ${JSON.stringify(run.stderr)}`);
  const [line] = lines;
  assert.ok(line !== undefined && line.startsWith('popwarden: '), line);
  return line;
}

const BACKEND = ['--backend', '127.0.0.1:1110'];

describe('popwarden CLI: configuration errors', () => {
  it('a bad value: exit 1, one stderr line naming the flag and the rule', async () => {
    const line = assertOneLineFailure(await runCli([...BACKEND, '--timeouts-idle', '5m']));
    assert.equal(line, `popwarden: config: --timeouts-idle "5m" is below RFC 1939's 10 minute minimum; use 10m or more`);
  });

  it('a bad value from the environment names the variable', async () => {
    const line = assertOneLineFailure(await runCli(BACKEND, { env: { POPWARDEN_LISTEN_TLS: '0.0.0.0:99999' } }));
    assert.match(line, /POPWARDEN_LISTEN_TLS "0.0.0.0:99999" has port 99999, out of range/);
  });

  it('a bad value in the file names file:line and key', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'backend: 127.0.0.1:1110\ngreeting: "hello <x@y>"\n');
    const line = assertOneLineFailure(await runCli(['--config', file]));
    assert.match(line, new RegExp(`^popwarden: config: ${file}:2: greeting "hello <x@y>" must be printable ASCII`));
  });

  it('no backend: exit 1 and says how to set it', async () => {
    const line = assertOneLineFailure(await runCli([]));
    assert.match(line, /backend is required; .*--backend.*POPWARDEN_BACKEND/);
  });

  it('an unknown flag: exit 1, with a suggestion', async () => {
    const line = assertOneLineFailure(await runCli([...BACKEND, '--listen-tsl', '127.0.0.1:0']));
    assert.equal(line, 'popwarden: config: unknown flag --listen-tsl; did you mean --listen-tls?');
  });

  it('an unknown POPWARDEN_ variable is not an error: a warning on stderr, and the config is used', async () => {
    const run = await runCli([...BACKEND, '--check-config'], { env: { POPWARDEN_BACKEND_PORT: '110', POPWARDEN_GREETING: 'from env' } });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /^popwarden: WARNING: ignoring unknown environment variable POPWARDEN_BACKEND_PORT; did you mean POPWARDEN_BACKEND_\w+\?\n$/);
    assert.equal((parse(run.stdout) as Record<string, unknown>)['greeting'], 'from env');
  });
});

/** uid and gid of `nobody` on Debian: another user than the one the tests run as (root). */
const NOBODY = 65534;

describe('popwarden CLI: --check-config', () => {
  it('prints the effective config as YAML and exits 0, without starting anything', async () => {
    const file = join(dir, 'good.yaml');
    writeFileSync(file, 'backend: "[::1]:1110"\nlisten_stls: []\ntimeouts:\n  idle: 20m\n');
    const run = await runCli(['--config', file, '--listen-tls', '127.0.0.1:995', '--check-config'], {
      env: { POPWARDEN_GREETING: 'hello from env' },
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    const printed = parse(run.stdout) as Record<string, unknown>;
    assert.equal(printed['backend'], '[::1]:1110');
    assert.deepEqual(printed['listen_tls'], ['127.0.0.1:995']);
    assert.deepEqual(printed['listen_stls'], []);
    assert.equal(printed['greeting'], 'hello from env');
    assert.deepEqual((printed['timeouts'] as Record<string, unknown>)['idle'], '20m');
  });

  it('prints a Redis password that contains @ masked whole', async () => {
    const run = await runCli([...BACKEND, '--redis-url', 'redis://:pass@dor@127.0.0.1:6390', '--check-config']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((parse(run.stdout) as { redis: { url: string } }).redis.url, 'redis://:********@127.0.0.1:6390');
    assert.ok(!run.stdout.includes('dor'), run.stdout);
  });

  it('says which rate limiter is switched off (issue 9.5)', async () => {
    const run = await runCli([...BACKEND, '--rate-limit-ip-max-failures', '0', '--check-config']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^# rate_limit\.ip is off \(max_failures: 0\): failures are not counted per address$/m);
    assert.equal((parse(run.stdout) as { rate_limit: { ip: { max_failures: number } } }).rate_limit.ip.max_failures, 0);
  });

  it('fails when cert or key cannot be read', async () => {
    const cert = join(dir, 'only-cert.pem');
    writeFileSync(cert, (await generateSelfSigned(['localhost'])).certPem);
    const line = assertOneLineFailure(await runCli([...BACKEND, '--cert', cert, '--key', join(dir, 'absent-key.pem'), '-t']));
    assert.match(line, /config: key .*absent-key.pem does not exist/);
  });

  it('exec: fails when the program is missing, not executable, or writable by others; passes a good one (issue 12.3)', async () => {
    const programs = join(dir, 'programs');
    mkdirSync(programs, { mode: 0o700 });
    const write = (name: string, mode: number): string => {
      const path = join(programs, name);
      writeFileSync(path, "#!/bin/sh\nprintf '+OK ready\\r\\n'\nread line\nprintf '+OK bye\\r\\n'\n");
      chmodSync(path, mode);
      return path;
    };
    const check = (program: string) => runCli(['--backend', `exec:${program} -x`, '--check-config']);
    assert.match(assertOneLineFailure(await check(join(programs, 'absent'))), /backend exec:.*absent -x: .*absent does not exist/);
    assert.match(assertOneLineFailure(await check(write('plain-file', 0o644))), /plain-file is not executable/);
    assert.match(assertOneLineFailure(await check(write('everyones', 0o777))), /everyones is not safe to run: .*everyones is writable by group or others/);
    const good = await check(write('good', 0o755));
    assert.equal(good.code, 0, good.stderr);
    assert.equal((parse(good.stdout) as { backend: string }).backend, `exec:${join(programs, 'good')} -x`);
  });

  it('fails, as the start would, on a state_dir that group or others may write; an absent one is fine', async () => {
    const state = join(dir, 'state-loose');
    mkdirSync(state);
    chmodSync(state, 0o770);
    const line = assertOneLineFailure(await runCli([...BACKEND, '--state-dir', state, '--check-config']));
    assert.equal(line, `popwarden: state_dir ${state} is writable by group or others (mode 0770); check what is in it, then chmod 700 ${state}`);
    const absent = join(dir, 'state-absent');
    const run = await runCli([...BACKEND, '--state-dir', absent, '--check-config']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(existsSync(absent), false, '--check-config creates nothing');
    // As the service's own directory looks to root checking its config by hand.
    const services = join(dir, 'state-of-another-user');
    mkdirSync(services, { mode: 0o700 });
    chownSync(services, NOBODY, NOBODY);
    const asRoot = await runCli([...BACKEND, '--state-dir', services, '--check-config']);
    assert.equal(asRoot.code, 0, asRoot.stderr);
  });

  it('fails when backend_ca does not exist', async () => {
    const line = assertOneLineFailure(await runCli([...BACKEND, '--backend-ca', join(dir, 'no-ca.pem'), '--check-config']));
    assert.match(line, /config: backend_ca .*no-ca.pem does not exist/);
  });

  it('fails when the key does not belong to the certificate', async () => {
    const [a, b] = await Promise.all([generateSelfSigned(['localhost']), generateSelfSigned(['localhost'])]);
    const cert = join(dir, 'a-cert.pem');
    const key = join(dir, 'b-key.pem');
    writeFileSync(cert, a.certPem);
    writeFileSync(key, b.keyPem, { mode: 0o600 });
    const line = assertOneLineFailure(await runCli([...BACKEND, '--cert', cert, '--key', key, '--check-config']));
    assert.match(line, /^popwarden: tls: key .* does not belong to cert/);
  });
});

describe('popwarden CLI: --help and --version', () => {
  it('--help prints usage and exits 0', async () => {
    const run = await runCli(['--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage: popwarden \[--config FILE\]/);
    assert.match(run.stdout, /--timeouts-idle DURATION +POPWARDEN_TIMEOUTS__IDLE/);
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const run = await runCli(['--version']);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, `popwarden ${version}\n`);
  });
});

describe('popwarden CLI: startup and shutdown', () => {
  it('a port already in use: exit 1, one line, and no listener left behind', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    after(() => blocker.close());
    const port = (blocker.address() as AddressInfo).port;
    const run = await runCli([...BACKEND, '--state-dir', join(dir, 'state-busy'), '--listen-stls', '127.0.0.1:0', '--listen-tls', `127.0.0.1:${port}`]);
    const line = assertOneLineFailure(run);
    assert.equal(line, `popwarden: cannot listen on 127.0.0.1:${port}: address already in use; stop whatever holds it or change listen_tls/listen_stls`);
  });

  it('a world-writable ./.state with a planted certificate: exit 1, one line naming it and the fix', async () => {
    const state = join(dir, '.state');
    mkdirSync(state);
    chmodSync(state, 0o777);
    const planted = await generateSelfSigned(['planted.example']);
    writeFileSync(join(state, 'cert.pem'), planted.certPem);
    writeFileSync(join(state, 'key.pem'), planted.keyPem, { mode: 0o600 });
    try {
      const line = assertOneLineFailure(await runCli([...BACKEND, '--listen-tls', '127.0.0.1:0', '--listen-stls', '']));
      assert.equal(line, `popwarden: state_dir ${state} is writable by group or others (mode 0777); check what is in it, then chmod 700 ${state}`);
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });

  it('a stop signal during startup (while the certificate is generated) still ends in an orderly exit 0', async () => {
    let signalled = false;
    const run = await runCli([...BACKEND, '--state-dir', join(dir, 'state-early'), '--listen-tls', '127.0.0.1:0', '--listen-stls', ''], {
      onStdout(text, child) {
        if (!signalled && text.includes('generating a self-signed certificate')) {
          signalled = true;
          child.kill('SIGINT');
        }
      },
    });
    assert.ok(signalled, run.stdout);
    assert.equal(run.code, 0, `signal ${run.signal}; stdout: ${run.stdout}; stderr: ${run.stderr}`);
    assert.match(run.stdout, /"signal":"SIGINT","msg":"stopping"/);
    assert.match(run.stdout, /"msg":"stopped"/);
  });

  it('serves, then stops on SIGTERM with exit 0 (Kubernetes service variables in the environment only warn)', async () => {
    let listeningPort: number | undefined;
    let probed: Promise<void> | undefined;
    const run = await runCli([...BACKEND, '--state-dir', join(dir, 'state-run'), '--listen-tls', '127.0.0.1:0', '--listen-stls', ''], {
      env: { POPWARDEN_PORT: 'tcp://10.0.0.7:995', POPWARDEN_SERVICE_HOST: '10.0.0.7', POPWARDEN_SERVICE_PORT: '995' },
      onStdout(text, child) {
        const match = /"address":"127\.0\.0\.1:(\d+)","msg":"listening"/.exec(text);
        if (match === null || listeningPort !== undefined) return;
        listeningPort = Number(match[1]);
        // Prove it really listens before asking it to stop.
        probed = new Promise<void>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port: listeningPort ?? 0 }, () => {
            socket.destroy();
            child.kill('SIGTERM');
            resolve();
          });
          socket.on('error', reject);
        });
      },
    });
    await probed;
    assert.ok(listeningPort !== undefined, `never listened; stdout: ${run.stdout}; stderr: ${run.stderr}`);
    assert.equal(run.code, 0, `signal ${run.signal}; stdout: ${run.stdout}; stderr: ${run.stderr}`);
    assert.equal(run.stderr, '');
    assert.match(run.stdout, /USING A SELF-SIGNED CERTIFICATE/);
    assert.match(run.stdout, /"level":"warn".*"msg":"ignoring POPWARDEN_PORT, POPWARDEN_SERVICE_HOST, POPWARDEN_SERVICE_PORT: Kubernetes service variables/);
    assert.match(run.stdout, /"signal":"SIGTERM","msg":"stopping"/);
    assert.match(run.stdout, /"msg":"stopped"/);
  });
});
