/**
 * testssl.sh (Debian) against popwarden's default TLS policy, on the implicit-TLS listener and
 * with `-t pop3` through STLS: no finding of severity MEDIUM or higher (T-01..T-08, X-04). The
 * JSON reports are kept in test-output/ for the curious.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPopwarden, type RunningProxy } from '../../src/proxy.js';
import { loadTlsMaterial } from '../../src/net/tls-material.js';
import { createLogger } from '../../src/observability/log.js';
import { testConfig } from '../harness/popwarden.js';
import { createTestCa, type TestCa } from '../harness/test-ca.js';

const run = promisify(execFile);
const OUTPUT = join(process.cwd(), 'test-output');
const SEVERE = new Set(['MEDIUM', 'HIGH', 'CRITICAL']);

interface Finding {
  readonly id: string;
  readonly severity: string;
  readonly finding: string;
}

/** Runs testssl and returns its findings; gates on severities, not on its exit code (SECURITY-TESTS §10). */
async function scan(port: number, ca: TestCa, name: string, starttls: boolean): Promise<Finding[]> {
  mkdirSync(OUTPUT, { recursive: true });
  const report = join(OUTPUT, `testssl-${name}.json`);
  rmSync(report, { force: true }); // testssl refuses to overwrite a report
  const args = ['--quiet', '--color', '0', '--warnings', 'batch', '--nodns', 'none', '--openssl-timeout', '5',
    '-p', '-S', '-f', '-U', '--add-ca', ca.caFile, '--jsonfile', report];
  if (starttls) args.push('-t', 'pop3');
  args.push(`127.0.0.1:${port}`);
  await run('testssl', args, { timeout: 300_000 }).catch((error: { code?: unknown }) => {
    if (typeof error.code !== 'number') throw error; // a non-zero exit only counts ambiguities
  });
  return JSON.parse(readFileSync(report, 'utf8')) as Finding[];
}

describe('TLS scanner', { timeout: 600_000 }, () => {
  let proxy: RunningProxy;
  let ca: TestCa;
  const port = (kind: 'tls' | 'stls'): number => proxy.listeners.find((l) => l.config.kind === kind)!.address.port;

  before(async () => {
    ca = createTestCa();
    const config = testConfig({ backend: { host: '127.0.0.1', port: 9 }, tls: { certFile: ca.certFile, keyFile: ca.keyFile } });
    const log = createLogger('silent');
    proxy = await startPopwarden(config, { log, tls: await loadTlsMaterial(config, log) });
  });
  after(async () => proxy.close());

  for (const [name, kind] of [['implicit', 'tls'], ['stls', 'stls']] as const) {
    test(`${name}: no MEDIUM, HIGH or CRITICAL finding, and the policy is what we say`, async () => {
      const findings = await scan(port(kind), ca, name, kind === 'stls');
      const byId = new Map(findings.map((f) => [f.id, f]));
      const severe = findings.filter((f) => SEVERE.has(f.severity)).map((f) => `${f.id} ${f.severity}: ${f.finding}`);
      assert.deepEqual(severe, []);
      // The scan really ran and saw the protocols: TLS 1.2 and 1.3 offered, nothing older (T-01).
      assert.match(byId.get('TLS1_2')?.finding ?? '', /^offered/);
      assert.match(byId.get('TLS1_3')?.finding ?? '', /^offered/);
      for (const old of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) assert.match(byId.get(old)?.finding ?? '', /not offered/, old);
      assert.equal(byId.get('cert_chain_of_trust')?.severity, 'OK');
      assert.equal(byId.get('LUCKY13')?.severity, 'OK', 'no CBC suites (T-02)');
      assert.equal(byId.get('secure_client_renego')?.severity, 'OK', 'client renegotiation refused (X-04)');
    });
  }
});
