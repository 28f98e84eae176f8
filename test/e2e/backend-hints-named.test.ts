/**
 * With named backends (`backends:`), every hint a probe, /readyz, --check-config or a startup
 * warning gives names the key the operator edits, backends.NAME.KEY, and never the one-backend
 * backend_* key that `backends:` refuses. Two named backends, one misconfigured: real Dovecot
 * offering STLS with a certificate no configured CA signed (north), and real popa3d (south).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { startLegacyServer, type LegacyServer } from '../harness/legacy.js';
import { spawnPopwarden, stopAll, type PopwardenProcess } from '../harness/popwarden-process.js';
import { startTestProxy, testCertificate, testConfig } from '../harness/popwarden.js';
import { RawClient } from '../harness/raw-client.js';
import { scratchDir } from '../harness/scratch.js';
import { probeBackend } from '../../src/backend/probe.js';

const CLI = new URL('../../src/cli.ts', import.meta.url).pathname;
/** A one-backend key (backend_ca, backend_tls, ...) where a named backend's key belongs. */
const ONE_BACKEND_KEY = /\bbackend_(ca|tls|tls_servername|auth)\b|--backend-/;

describe('hints name backends.NAME.* keys for named backends', { timeout: 180_000 }, () => {
  let dovecot: Dovecot;
  let popa3d: LegacyServer;
  let pw: PopwardenProcess | undefined;
  before(async () => {
    [dovecot, popa3d] = await Promise.all([startDovecot({ profile: 'stls' }), startLegacyServer({ server: 'popa3d' })]);
  });
  after(() => stopAll([pw], dovecot, popa3d));

  const settings = () => ({
    backends: {
      // No `ca`: Dovecot's certificate is signed by a CA popwarden does not trust.
      north: { address: `${dovecot.host}:${dovecot.port}`, tls: 'auto', probe_interval: '1s' },
      south: { address: `${popa3d.host}:${popa3d.port}`, trust_loopback: true, probe_interval: '1s' },
    },
    routing: { default: 'south' },
  });

  test('the probe log, /readyz and the metric name backends.north.ca; south stays up', async () => {
    pw = await spawnPopwarden(settings());
    const down = await pw.waitForLog((e) => e['msg'] === 'backend probe: DOWN' && e['backend'] === 'north');
    assert.equal(down['reason'], 'tls-untrusted');
    assert.match(String(down['fix']), /set backends\.north\.ca to the PEM file/);
    assert.match(String(down['fix']), /backends\.north\.tls: off/, 'a loopback backend may go without TLS');
    assert.doesNotMatch(String(down['fix']), ONE_BACKEND_KEY);
    await pw.waitForLog((e) => e['msg'] === 'backend probe: up' && e['backend'] === 'south');

    const res = await fetch(`http://127.0.0.1:${pw.metricsPort}/readyz`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200, 'one backend of two is up: still ready');
    const checks = ((await res.json()) as { checks: { backend: { backends: Record<string, { ok: boolean; detail: string }> } } }).checks;
    assert.equal(checks.backend.backends['south']?.ok, true);
    assert.equal(checks.backend.backends['north']?.ok, false);
    assert.match(checks.backend.backends['north']?.detail ?? '', /tls-untrusted.*backends\.north\.ca/);
    assert.doesNotMatch(checks.backend.backends['north']?.detail ?? '', ONE_BACKEND_KEY);
    assert.equal(pw.crashReport(), undefined);
  });

  test('--check-config exits 1 with one line naming backends.north.ca', async () => {
    const dir = scratchDir('popwarden-hints');
    const file = join(dir, 'popwarden.yaml');
    // No cert: the self-signed one --check-config would make is no problem (the test one warns of its expiry).
    writeFileSync(file, stringify({ listen_tls: ['127.0.0.1:0'], state_dir: join(dir, 'state'), ...settings() }));
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', CLI, '--config', file, '--check-config'], (_error, _stdout, stderr) =>
        resolve({ code: child.exitCode, stderr }),
      );
    });
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^popwarden: backend north \(127\.0\.0\.1:\d+\): tls-untrusted: .*set backends\.north\.ca /);
    assert.doesNotMatch(lines[0]!, ONE_BACKEND_KEY);
  });

  test('popa3d offers no STLS: with tls: starttls the fix names backends.south.tls', async () => {
    const south = testConfig({ backends: [{ name: 'south', host: popa3d.host, port: popa3d.port, tls: 'starttls' }] }).backends[0]!;
    const result = await probeBackend(south, 10_000);
    assert.equal(result.up, false);
    assert.equal('reason' in result && result.reason, 'no-stls');
    const fix = 'fix' in result ? String(result.fix) : '';
    assert.match(fix, /set backends\.south\.tls: auto/);
    assert.doesNotMatch(fix, ONE_BACKEND_KEY);
  });

  test('the startup warning for tls_insecure names backends.south.tls_insecure', async () => {
    const proxy = await startTestProxy({ backends: [{ name: 'south', host: popa3d.host, port: popa3d.port, tlsInsecure: true }] });
    try {
      const warning = await proxy.waitForLog((e) => String(e['msg']).startsWith('backend certificates are NOT verified'));
      assert.equal(warning['backend'], 'south');
      assert.match(String(warning['msg']), /\(backends\.south\.tls_insecure\)/);
    } finally {
      await proxy.stop();
    }
  });

  test('a login to popa3d, cleartext only on an untrusted port: the log names backends.south.* settings', async () => {
    const proxy = await startTestProxy({
      backends: [
        { name: 'north', host: dovecot.host, port: dovecot.port, caFile: dovecot.caFile! },
        // trust_loopback unset: popa3d's unprivileged loopback port is no trusted link.
        { name: 'south', host: popa3d.host, port: popa3d.port, trustLoopback: undefined },
      ],
      routing: { defaultBackend: 'south' },
    });
    try {
      const client = await RawClient.tls(proxy.host, proxy.tlsPort, proxy.caFile);
      try {
        await client.readLine();
        await client.command('USER alice');
        assert.match(await client.command('PASS s3cret!pw'), /^-ERR \[SYS\/TEMP\]/);
      } finally {
        client.destroy();
      }
      const refused = await proxy.waitForLog((e) => e['msg'] === 'refusing to log in to the backend');
      assert.equal(refused['code'], 'E_BACKEND_NO_SAFE_MECHANISM');
      assert.match(String(refused['fix']), /backends\.south\.tls: starttls.*backends\.south\.allow_plaintext_auth: true/);
      assert.doesNotMatch(String(refused['fix']), ONE_BACKEND_KEY);
      assert.doesNotMatch(String(refused['fix']), /allow-plaintext-backend-auth/);
    } finally {
      await proxy.stop();
    }
  });

  test('the one-backend form keeps its backend_* keys', async () => {
    const only = testConfig({ backend: { host: dovecot.host, port: dovecot.port, tls: 'auto', caFile: testCertificate().caFile } }).backends[0]!;
    const result = await probeBackend(only, 10_000);
    assert.match('fix' in result ? String(result.fix) : '', /set backend_ca to the PEM file/);
  });
});
