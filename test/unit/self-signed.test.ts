import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/observability/log.js';
import { ensureSelfSigned, generateSelfSigned, writeCertificatePair } from '../../src/certs/self-signed.js';

const root = mkdtempSync(join(tmpdir(), 'popwarden-self-signed-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = () => join(root, `state-${++dirCounter}`, 'nested');

const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

/** A real pino logger writing into an array, so tests see exactly what operators would. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

describe('generateSelfSigned', () => {
  it('makes a SHA-256 RSA-2048 serverAuth certificate with DNS and IP SANs, CN = first host, valid one year', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const started = performance.now();
    const pair = await generateSelfSigned(['mail.example.net', 'localhost', '127.0.0.1', '::1', 'localhost'], now);
    assert.ok(performance.now() - started < 2_000, 'key generation must stay under 2 s');

    const cert = new X509Certificate(pair.certPem);
    assert.equal(cert.subject.split('\n')[0], 'CN=mail.example.net');
    assert.equal(cert.subjectAltName, 'DNS:mail.example.net, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.equal(cert.checkHost('mail.example.net'), 'mail.example.net');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(cert.checkHost('other.example.net'), undefined);
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH_OID]);
    assert.equal(cert.ca, false);
    assert.equal(cert.publicKey.asymmetricKeyType, 'rsa');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(cert.verify(cert.publicKey), 'self-signature must verify');
    assert.ok(cert.checkPrivateKey(createPrivateKey(pair.keyPem)));
    const lifetimeDays = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    assert.ok(lifetimeDays > 365 && lifetimeDays < 366, `lifetime ${lifetimeDays} days`);
    assert.ok(Date.parse(cert.validFrom) < now.getTime());
    assert.ok(Date.parse(cert.validTo) > now.getTime() + 364 * 86_400_000);
  });

  it('signs with SHA-256', async () => {
    const pair = await generateSelfSigned(['localhost']);
    // sha256WithRSAEncryption, DER-encoded OID 1.2.840.113549.1.1.11
    const der = new X509Certificate(pair.certPem).raw;
    assert.ok(der.includes(Buffer.from('2a864886f70d01010b', 'hex')));
  });

  it('refuses an empty host list', async () => {
    await assert.rejects(generateSelfSigned([]), /at least one host/);
  });
});

describe('writeCertificatePair', () => {
  it('writes the key 0600 in a 0700 directory', async () => {
    const dir = freshDir();
    const { certFile, keyFile } = await writeCertificatePair(dir, { certPem: 'CERT', keyPem: 'KEY' });
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(readFileSync(certFile, 'utf8'), 'CERT');
    assert.equal(readFileSync(keyFile, 'utf8'), 'KEY');
  });
});

describe('ensureSelfSigned', () => {
  it('generates once, then reuses the same pair; logs the fingerprint loudly each time, never the key', async () => {
    const dir = freshDir();
    const first = capturingLogger();
    const created = await ensureSelfSigned(dir, ['localhost', '127.0.0.1'], first.log);
    assert.equal(created.generated, true);
    const cert = new X509Certificate(readFileSync(created.certFile));
    assert.equal(created.fingerprint256, cert.fingerprint256);
    assert.equal(statSync(created.keyFile).mode & 0o777, 0o600);

    const warning = first.lines.find((line) => line['level'] === 'warn');
    assert.ok(warning, 'a warn line is logged');
    assert.equal(warning['fingerprint256'], cert.fingerprint256);
    assert.match(String(warning['msg']), /SELF-SIGNED/);
    const keyPem = readFileSync(created.keyFile, 'utf8');
    const keyBody = keyPem.split('\n')[1] ?? 'unreachable';
    assert.ok(!JSON.stringify(first.lines).includes(keyBody), 'the private key never reaches the log');

    const second = capturingLogger();
    const reused = await ensureSelfSigned(dir, ['localhost', '127.0.0.1'], second.log);
    assert.equal(reused.generated, false);
    assert.equal(reused.fingerprint256, created.fingerprint256);
    assert.equal(readFileSync(reused.keyFile, 'utf8'), keyPem);
    assert.equal(second.lines.find((line) => line['level'] === 'warn')?.['fingerprint256'], created.fingerprint256);
  });

  it('tightens a loosened key file on reuse', async () => {
    const dir = freshDir();
    const { log } = capturingLogger();
    const { keyFile } = await ensureSelfSigned(dir, ['localhost'], log);
    chmodSync(keyFile, 0o644);
    await ensureSelfSigned(dir, ['localhost'], log);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  });

  it('replaces an expired pair', async () => {
    const dir = freshDir();
    const { log } = capturingLogger();
    const old = await ensureSelfSigned(dir, ['localhost'], log, new Date('2020-01-01T00:00:00Z'));
    const fresh = await ensureSelfSigned(dir, ['localhost'], log);
    assert.equal(fresh.generated, true);
    assert.notEqual(fresh.fingerprint256, old.fingerprint256);
  });

  it('replaces a pair whose key does not match, or that is not PEM', async () => {
    const dir = freshDir();
    const { log } = capturingLogger();
    const original = await ensureSelfSigned(dir, ['localhost'], log);
    writeFileSync(original.keyFile, (await generateSelfSigned(['localhost'])).keyPem);
    const rematched = await ensureSelfSigned(dir, ['localhost'], log);
    assert.equal(rematched.generated, true);
    const cert = new X509Certificate(readFileSync(rematched.certFile));
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(rematched.keyFile))));

    writeFileSync(rematched.certFile, 'garbage');
    assert.equal((await ensureSelfSigned(dir, ['localhost'], log)).generated, true);
  });

  it('does not overwrite a key path it cannot read (operator problem, not ours)', async () => {
    const dir = freshDir();
    const { log } = capturingLogger();
    // A directory where the key should be gives EISDIR, even for root (who ignores file modes).
    mkdirSync(join(dir, 'key.pem'), { recursive: true });
    await assert.rejects(ensureSelfSigned(dir, ['localhost'], log), { code: 'EISDIR' });
    assert.ok(statSync(join(dir, 'key.pem')).isDirectory());
  });
});
