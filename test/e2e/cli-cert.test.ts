import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'popwarden-cert-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function popwarden(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
}

describe('popwarden cert generate', { timeout: 60_000 }, () => {
  it('writes a certificate with every host as a SAN, serverAuth, SHA-256, and a 0600 key', () => {
    const out = join(dir, 'one');
    const run = popwarden('cert', 'generate', '--host', 'mail.example.org', '--host', 'pop.example.org', '--host', '192.0.2.7', '--days', '30', '--out', out);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /SHA-256 fingerprint [0-9A-F:]{95}/);
    const cert = new X509Certificate(readFileSync(join(out, 'cert.pem')));
    assert.equal(cert.subjectAltName, 'DNS:mail.example.org, DNS:pop.example.org, IP Address:192.0.2.7');
    assert.equal(cert.checkHost('pop.example.org'), 'pop.example.org');
    assert.equal(cert.checkIP('192.0.2.7'), '192.0.2.7');
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'key.pem')))));
    assert.equal(statSync(join(out, 'key.pem')).mode & 0o777, 0o600);
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, String(days));
    const text = spawnSync('openssl', ['x509', '-noout', '-text', '-in', join(out, 'cert.pem')], { encoding: 'utf8' }).stdout;
    assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(text, /Public-Key: \(2048 bit\)/);
  });

  it('refuses to overwrite, and explains usage errors', () => {
    const out = join(dir, 'one');
    const again = popwarden('cert', 'generate', '--host', 'x.example', '--out', out);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /exists/);
    const noHost = popwarden('cert', 'generate', '--out', join(dir, 'two'));
    assert.equal(noHost.status, 2);
    assert.match(noHost.stderr, /at least one --host/);
    const badHost = popwarden('cert', 'generate', '--host', 'bad host!', '--out', join(dir, 'two'));
    assert.equal(badHost.status, 2);
    const help = popwarden('cert', 'generate', '--help');
    assert.equal(help.status, 0);
    assert.match(help.stdout, /RSA 2048: node-forge.*cannot make ECDSA/s);
  });
});
