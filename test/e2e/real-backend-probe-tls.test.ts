/**
 * A backend that offers STLS with a certificate popwarden does not trust would fail every login
 * with -ERR [SYS/TEMP], and only the first login's log said why (issue 9.8). The probe, /readyz
 * and --check-config find it at start and name the fix. Real Dovecot (stls profile, a
 * self-signed certificate nobody's CA list holds).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { startDovecot, type Dovecot } from '../harness/dovecot.js';
import { testCertificate, testConfig } from '../harness/popwarden.js';
import { probeBackend } from '../../src/backend/probe.js';
import { startObservability } from '../../src/wiring/observability.js';
import { createLogger } from '../../src/observability/log.js';
import type { BackendConfig } from '../../src/config/types.js';
import { scratchDir } from '../harness/scratch.js';

const CLI = new URL('../../src/cli.ts', import.meta.url).pathname;
const silent = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));

describe('the probe checks the backend certificate behind STLS (issue 9.8)', () => {
  let dovecot: Dovecot;
  let backend: (extra?: Partial<BackendConfig>) => BackendConfig;
  before(async () => {
    dovecot = await startDovecot({ profile: 'stls' });
    backend = (extra = {}) => testConfig({ backend: { host: dovecot.host, port: dovecot.port, tls: 'auto', ...extra } }).backends[0]!;
  });
  after(() => dovecot.stop());

  test('a certificate no configured CA signed: down, and the fix names backend_ca and backend_tls: off', async () => {
    const result = await probeBackend(backend({ caFile: testCertificate().caFile }), 5_000);
    assert.equal(result.up, false);
    assert.equal('reason' in result && result.reason, 'tls-untrusted');
    const fix = 'fix' in result ? String(result.fix) : '';
    assert.match(fix, /backend_ca/);
    assert.match(fix, /backend_tls: off/, 'a loopback backend may go without TLS');
  });

  test('a certificate for another name: the fix names backend_tls_servername', async () => {
    const result = await probeBackend(backend({ caFile: dovecot.caFile!, tlsServerName: 'mail.example.org' }), 5_000);
    assert.equal('reason' in result && result.reason, 'tls-name-mismatch');
    assert.match('fix' in result ? String(result.fix) : '', /backend_tls_servername/);
  });

  test('the right CA: up, after STLS and a verified handshake', async () => {
    assert.equal((await probeBackend(backend({ caFile: dovecot.caFile! }), 5_000)).up, true);
  });

  test('/readyz is 503 and its backend check names the fix', async () => {
    const base = testConfig({ backend: { host: dovecot.host, port: dovecot.port, tls: 'auto' } });
    const obs = await startObservability({ ...base, metrics: { listen: { host: '127.0.0.1', port: 0 }, backendProbeIntervalMs: 0 } }, silent);
    try {
      obs.watch({ listeners: [], close: () => Promise.resolve() });
      const res = await fetch(`http://${obs.address!.host}:${obs.address!.port}/readyz`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 503);
      const checks = ((await res.json()) as { checks: Record<string, { ok: boolean; detail: string }> }).checks;
      assert.equal(checks['backend']?.ok, false);
      assert.match(checks['backend']?.detail ?? '', /tls-untrusted.*backend_ca/);
    } finally {
      await obs.close();
    }
  });

  test('--check-config exits 1 with one line that names the fix', async () => {
    const stateDir = scratchDir('popwarden-state');
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', CLI, '--backend', `${dovecot.host}:${dovecot.port}`, '--state-dir', stateDir, '--check-config'],
        (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
      );
    });
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^popwarden: .*backend .*certificate.*backend_ca/);
  });
});

// A backend given as an IP address is checked against that address, as a TLS client checks the
// host it dialled: Node checks "localhost" when a socket it did not dial itself has no name, so
// a certificate naming only the backend's IP address was refused, and one naming only
// "localhost" was accepted for any address (found by the newcomer review).
describe('a backend given as an IP address: its certificate must name that address', () => {
  let onlyAddress: Dovecot;
  let onlyLocalhost: Dovecot;
  before(async () => {
    [onlyAddress, onlyLocalhost] = await Promise.all([
      startDovecot({ profile: 'stls', subjectAltName: 'IP:127.0.0.1' }),
      startDovecot({ profile: 'stls', subjectAltName: 'DNS:localhost' }),
    ]);
  });
  after(async () => {
    await Promise.all([onlyAddress.stop(), onlyLocalhost.stop()]);
  });
  const backend = (dovecot: Dovecot, extra: Partial<BackendConfig> = {}): BackendConfig =>
    testConfig({ backend: { host: dovecot.host, port: dovecot.port, tls: 'starttls', caFile: dovecot.caFile!, ...extra } }).backends[0]!;

  test('a certificate for IP:127.0.0.1 only: up', async () => {
    assert.equal(onlyAddress.host, '127.0.0.1');
    const result = await probeBackend(backend(onlyAddress), 5_000);
    assert.equal(result.up, true, JSON.stringify(result));
  });

  test('a certificate for DNS:localhost only: down for 127.0.0.1 (tls-name-mismatch), up with backend_tls_servername: localhost', async () => {
    const result = await probeBackend(backend(onlyLocalhost), 5_000);
    assert.equal(result.up, false);
    assert.equal('reason' in result && result.reason, 'tls-name-mismatch');
    assert.equal((await probeBackend(backend(onlyLocalhost, { tlsServerName: 'localhost' }), 5_000)).up, true);
  });
});
