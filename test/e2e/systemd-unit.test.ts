/**
 * contrib/popwarden.service runs popwarden on jemalloc (its Environment=LD_PRELOAD line; why: the
 * README's Soak) with jemalloc's background threads on (MALLOC_CONF=background_thread:true: they
 * give freed memory back to the system while popwarden is idle). Started exactly as the unit
 * starts it (its environment, its ExecStart with the installed bin replaced by dist/cli.js,
 * executed through its shebang as /usr/bin/popwarden is), popwarden has libjemalloc mapped, a
 * jemalloc background thread running and nothing on stderr; and systemd-analyze reads the unit
 * without a complaint. `npm start` takes the same environment, less a library this machine lacks.
 * Needs libjemalloc2 (scripts/test-all.sh installs it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { testCertificate } from '../harness/popwarden.js';
import { ProcessOutput } from '../harness/process-output.js';
import { terminate } from '../harness/proc.js';
import { POPWARDEN_UNIT, unitEnvironment, unitEnvironmentFilling, unitEnvironmentHere, unitExecStart } from '../harness/systemd-unit.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist', 'cli.js');
const INSTALLED_BIN = '/usr/bin/popwarden';

describe('contrib/popwarden.service', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-unit-'));
  const configFile = join(dir, 'popwarden.yaml');
  const output = new ProcessOutput();
  let child: ChildProcess | undefined;

  before(async () => {
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
    const cert = testCertificate();
    writeFileSync(configFile, [
      'listen_tls: ["127.0.0.1:0"]',
      'listen_stls: []',
      'backend: "127.0.0.1:9"',
      'metrics_listen: "off"',
      'backend_probe_interval: "0s"',
      `state_dir: "${join(dir, 'state')}"`,
      `cert: "${cert.certFile}"`,
      `key: "${cert.keyFile}"`,
      '',
    ].join('\n'));
    const [program, ...args] = unitExecStart();
    assert.equal(program, INSTALLED_BIN);
    const configAt = args.indexOf('--config');
    assert.notEqual(configAt, -1, 'ExecStart names its config file');
    args[configAt + 1] = configFile;
    child = spawn(CLI, args, { env: { PATH: process.env['PATH'] ?? '', ...unitEnvironment() } });
    output.attach(child.stdout, child.stderr);
    await output.waitFor(/"msg":"listening"/, 0, 30_000);
  });
  after(async () => {
    await terminate(child);
    rmSync(dir, { recursive: true, force: true });
  });

  test('runs popwarden with jemalloc as its allocator', () => {
    const environ = readFileSync(`/proc/${child!.pid}/environ`, 'latin1').split('\0');
    assert.ok(environ.includes('LD_PRELOAD=libjemalloc.so.2'), environ.join(' '));
    // Loaded, not just asked for: ld.so only warns (on stderr) about a library it cannot preload.
    assert.match(readFileSync(`/proc/${child!.pid}/maps`, 'latin1'), /\/libjemalloc\.so\.2$/m);
    assert.doesNotMatch(output.text, /cannot be preloaded/);
  });

  test("runs jemalloc's background thread, which returns freed pages while popwarden is idle", () => {
    const environ = readFileSync(`/proc/${child!.pid}/environ`, 'latin1').split('\0');
    assert.ok(environ.includes('MALLOC_CONF=background_thread:true'), environ.join(' '));
    // jemalloc starts its background threads at its first allocation and names them so; an option
    // it does not know would only be warned about on stderr.
    const threads = readdirSync(`/proc/${child!.pid}/task`).map((task) => readFileSync(`/proc/${child!.pid}/task/${task}/comm`, 'latin1').trim());
    assert.ok(threads.includes('jemalloc_bg_thd'), threads.join(' '));
    assert.doesNotMatch(output.text, /<jemalloc>/);
  });

  test('systemd-analyze verify reads it without a complaint', () => {
    // As installed, with the bin where this checkout has it (verify checks that it is executable).
    const unit = join(dir, 'popwarden.service');
    writeFileSync(unit, readFileSync(POPWARDEN_UNIT, 'utf8').replaceAll(INSTALLED_BIN, CLI));
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr.trim(), '');
  });
});

describe('npm start gives popwarden the unit environment', () => {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-unit-env-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('jemalloc included where it is installed', () => {
    assert.deepEqual(unitEnvironmentHere(), unitEnvironment());
    assert.equal(unitEnvironmentHere()['LD_PRELOAD'], 'libjemalloc.so.2');
  });

  test('without a library ld.so cannot load (a fresh machine): the rest of the environment', () => {
    const unit = join(dir, 'popwarden.service');
    writeFileSync(unit, readFileSync(POPWARDEN_UNIT, 'utf8').replace('LD_PRELOAD=libjemalloc.so.2', 'LD_PRELOAD=libno-such-allocator.so.1'));
    assert.equal(unitEnvironment(unit)['LD_PRELOAD'], 'libno-such-allocator.so.1');
    // MALLOC_CONF stays: glibc's malloc does not read it.
    assert.deepEqual(unitEnvironmentHere(unit), { NODE_ENV: 'production', MALLOC_CONF: 'background_thread:true' });
  });

  test("the caller's own environment wins: the unit's only fills what the caller left unset", () => {
    /** What a node started by `npm start` under `caller` sees of two of the variables the unit sets. */
    const seen = (caller: Record<string, string>): unknown => {
      const env = { PATH: process.env['PATH'] ?? '', ...caller };
      const child = spawnSync(process.execPath, ['-p', 'JSON.stringify([process.env.NODE_ENV, process.env.LD_PRELOAD])'], { env: { ...env, ...unitEnvironmentFilling(env) }, encoding: 'utf8' });
      assert.equal(child.status, 0, child.stderr);
      return JSON.parse(child.stdout);
    };
    assert.deepEqual(seen({}), ['production', 'libjemalloc.so.2']);
    // `LD_PRELOAD= NODE_ENV=development npm start`: set, even to nothing, is the caller's choice.
    assert.deepEqual(seen({ NODE_ENV: 'development', LD_PRELOAD: '' }), ['development', '']);
    assert.deepEqual(seen({ NODE_ENV: 'development' }), ['development', 'libjemalloc.so.2']);
    // MALLOC_CONF is filled in too: an allocator that is not jemalloc does not read it.
    assert.deepEqual(unitEnvironmentFilling({ LD_PRELOAD: 'libtcmalloc.so.4' }), { NODE_ENV: 'production', MALLOC_CONF: 'background_thread:true' });
    assert.deepEqual(unitEnvironmentFilling({ LD_PRELOAD: '', MALLOC_CONF: 'narenas:1', NODE_ENV: 'test' }), {});
  });
});
