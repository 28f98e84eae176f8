/**
 * Reload end to end on the built binary: `node dist/cli.js` (after `npm run build`) is sent
 * SIGHUP, re-reads its config file and certificates, and serves the new certificate; a broken
 * config file is refused and the old certificate stays; with tls.watch_files a rewritten
 * certificate is picked up without a signal.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeNamedCertificate, servedFingerprint } from '../harness/popwarden.js';
import { ProcessOutput } from '../harness/process-output.js';
import { terminate } from '../harness/proc.js';

const ROOT = resolve(import.meta.dirname, '../..');

describe('popwarden binary reloads on SIGHUP and on certificate changes', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'popwarden-reload-cli-'));
  const live = { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key') };
  const first = makeNamedCertificate(dir, 'first', ['localhost']);
  const second = makeNamedCertificate(dir, 'second', ['localhost']);
  const third = makeNamedCertificate(dir, 'third', ['localhost']);
  const configFile = join(dir, 'popwarden.yaml');
  const configText = (greeting: string): string =>
    [
      'listen_tls: ["127.0.0.1:0"]',
      'listen_stls: []',
      'backend: "127.0.0.1:9"',
      'metrics_listen: "off"',
      `state_dir: "${join(dir, 'state')}"`,
      `cert: "${live.certFile}"`,
      `key: "${live.keyFile}"`,
      `greeting: "${greeting}"`,
      'tls:',
      '  watch_files: true',
      '',
    ].join('\n');
  let child: ChildProcess | undefined;
  const output = new ProcessOutput();
  let port = 0;

  before(async () => {
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    writeFileSync(configFile, configText('first greeting'));
    child = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), '--config', configFile], { env: { PATH: process.env['PATH'] ?? '' } });
    output.attach(child.stdout, child.stderr);
    port = Number((await output.waitFor(/"address":"127\.0\.0\.1:(\d+)","msg":"listening"/, 0))[1]);
  });
  after(async () => {
    await terminate(child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the first certificate', async () => {
    assert.equal(await servedFingerprint(port), first.fingerprint256);
  });

  it('SIGHUP: a new certificate is served, the process keeps running', async () => {
    copyFileSync(second.certFile, live.certFile);
    copyFileSync(second.keyFile, live.keyFile);
    const from = output.text.length;
    child?.kill('SIGHUP');
    // watch_files may get there first; either way exactly the new pair is served afterwards.
    await output.waitFor(/"msg":"reloaded/, from);
    assert.equal(await servedFingerprint(port), second.fingerprint256);
    assert.equal(child?.exitCode, null);
  });

  it('SIGHUP with a broken config file: refused in one line, the old certificate stays', async () => {
    // No wait for the watcher: the last test's SIGHUP reload re-armed it, dropping the debounce
    // its certificate writes had started; a reload it still made would read this same file.
    writeFileSync(configFile, configText('first greeting') + 'no_such_key: 1\n');
    const from = output.text.length;
    child?.kill('SIGHUP');
    const refused = await output.waitFor(/.*"msg":"reload refused.*/, from);
    assert.match(refused[0], /no_such_key/);
    assert.equal(await servedFingerprint(port), second.fingerprint256);
    assert.equal(child?.exitCode, null);
    writeFileSync(configFile, configText('first greeting'));
  });

  it('tls.watch_files: rewritten certificate files are reloaded without a signal', async () => {
    const from = output.text.length;
    copyFileSync(third.keyFile, live.keyFile);
    copyFileSync(third.certFile, live.certFile);
    await output.waitFor(/"msg":"reloaded/, from);
    assert.equal(await servedFingerprint(port), third.fingerprint256);
  });
});
