import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createSecureContext, createServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { pkcs12ToPem } from '../../src/certs/pkcs12.js';
import { loadConfig } from '../../src/config/load.js';
import { loadTlsMaterial } from '../../src/net/tls-material.js';
import { TlsMaterialError } from '../../src/tls/material-error.js';
import { createLogger } from '../../src/observability/log.js';
import { servedFingerprint } from '../harness/popwarden.js';
import { createTestCa } from '../harness/test-ca.js';

const ca = createTestCa();
after(() => rmSync(ca.dir, { recursive: true, force: true }));
const leaf = new X509Certificate(readFileSync(ca.certFile));
const passFile = join(ca.dir, 'pfx.pass');
writeFileSync(passFile, 'correct horse\n', { mode: 0o600 });
const wrongPassFile = join(ca.dir, 'wrong.pass');
writeFileSync(wrongPassFile, 'battery staple\n', { mode: 0o600 });

function exportPfx(name: string, extra: string[]): string {
  const out = join(ca.dir, name);
  execFileSync('openssl', ['pkcs12', '-export', ...extra, '-in', ca.certFile, '-inkey', ca.keyFile, '-out', out, '-passout', 'pass:correct horse'], { stdio: 'ignore' });
  return out;
}
const modern = exportPfx('modern.p12', []);
// OpenSSL 3 writes RC2-40/3DES only with -legacy, which needs the legacy provider (present here: `openssl list -providers -provider legacy`).
const legacy = exportPfx('legacy.p12', ['-legacy']);

function configFor(pfx: string, pass = passFile) {
  const result = loadConfig(['--backend', '127.0.0.1:1110', '--state-dir', ca.dir, '--tls-pfx', pfx, '--tls-pfx-passphrase-file', pass], {});
  assert.ok(result.action === 'run');
  return result.config;
}

describe('PKCS#12 certificates (tls.pfx)', { timeout: 60_000 }, () => {
  it('the legacy file really is one OpenSSL 3 in Node refuses', () => {
    assert.throws(() => createSecureContext({ pfx: readFileSync(legacy), passphrase: 'correct horse' }), /unsupported/i);
    assert.doesNotThrow(() => createSecureContext({ pfx: readFileSync(modern), passphrase: 'correct horse' }));
  });

  it('node-forge unwraps the legacy file into the key and the chain, leaf first', () => {
    const pem = pkcs12ToPem(readFileSync(legacy), 'correct horse');
    const chain = pem.certPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter((part) => part.trim() !== '');
    assert.equal(chain.length, 2);
    assert.equal(new X509Certificate(chain[0] ?? '').fingerprint256, leaf.fingerprint256);
    assert.equal(new X509Certificate(chain[1] ?? '').subject, 'CN=popwarden test CA');
    assert.throws(() => pkcs12ToPem(readFileSync(legacy), 'wrong'));
  });

  for (const [label, file] of [['modern (Node)', modern], ['legacy RC2-40 (converted)', legacy]] as const) {
    it(`serves the ${label} bundle's certificate`, async () => {
      const lines: string[] = [];
      const log = createLogger('info', new Writable({ write: (chunk: Buffer, _e, cb) => void (lines.push(chunk.toString()), cb()) }));
      const material = await loadTlsMaterial(configFor(file), log);
      assert.equal(material.certificates?.[0]?.name, 'localhost');
      assert.equal(lines.some((line) => line.includes('legacy PKCS#12')), file === legacy);
      const server = createServer(material.serverOptions, (socket) => socket.end());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        assert.equal(await servedFingerprint((server.address() as AddressInfo).port), leaf.fingerprint256);
      } finally {
        server.close();
      }
    });
    it(`refuses the ${label} bundle with a wrong passphrase, in one line`, async () => {
      await assert.rejects(loadTlsMaterial(configFor(file, wrongPassFile), createLogger('silent')), (error: unknown) => {
        assert.ok(error instanceof TlsMaterialError);
        assert.match(error.message, /wrong passphrase/);
        assert.ok(!error.message.includes('\n'));
        return true;
      });
    });
  }
});
