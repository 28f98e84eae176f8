/** --check-config on certificates: chain order, names covered, expiry warning; run as the operator does. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeNamedCertificate } from '../harness/popwarden.js';
import { createTestCa } from '../harness/test-ca.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'popwarden-check-certs-'));
const ca = createTestCa();
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(ca.dir, { recursive: true, force: true });
});

function check(yaml: string) {
  const file = join(dir, `c-${Math.random().toString(16).slice(2)}.yaml`);
  writeFileSync(file, `backend: "127.0.0.1:1110"\nstate_dir: "${dir}"\nmetrics_listen: "off"\n${yaml}`);
  return spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), '--config', file, '--check-config'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 30_000,
  });
}

function oneLineError(run: ReturnType<typeof check>, pattern: RegExp): void {
  assert.equal(run.status, 1, run.stdout + run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0] ?? '', pattern);
}

describe('--check-config checks the certificates', { timeout: 90_000 }, () => {
  it('accepts a chain in order that covers tls.server_names', () => {
    const run = check(`cert: "${ca.certFile}"\nkey: "${ca.keyFile}"\ntls:\n  server_names: [localhost, 127.0.0.1]\n`);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stderr, '');
  });

  it('refuses a chain in the wrong order (leaf, root, intermediate), accepts it in order', () => {
    const p = (name: string): string => join(dir, name);
    const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
    writeFileSync(p('int.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n');
    writeFileSync(p('leaf.ext'), 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=popwarden test intermediate', '-keyout', p('int.key'), '-out', p('int.csr'));
    openssl('x509', '-req', '-in', p('int.csr'), '-CA', join(ca.dir, 'ca.pem'), '-CAkey', join(ca.dir, 'ca.key'), '-CAcreateserial', '-days', '30', '-extfile', p('int.ext'), '-out', p('int.pem'));
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', p('leaf2.key'), '-out', p('leaf2.csr'));
    openssl('x509', '-req', '-in', p('leaf2.csr'), '-CA', p('int.pem'), '-CAkey', p('int.key'), '-CAcreateserial', '-days', '30', '-extfile', p('leaf.ext'), '-out', p('leaf2.pem'));
    const cat = (out: string, ...files: string[]): void => void execFileSync('sh', ['-c', `cat ${files.map((f) => `"${f}"`).join(' ')} > "${out}"`]);
    cat(p('good.pem'), p('leaf2.pem'), p('int.pem'), join(ca.dir, 'ca.pem'));
    cat(p('bad.pem'), p('leaf2.pem'), join(ca.dir, 'ca.pem'), p('int.pem'));
    assert.equal(check(`cert: "${p('good.pem')}"\nkey: "${p('leaf2.key')}"\n`).status, 0);
    oneLineError(
      check(`cert: "${p('bad.pem')}"\nkey: "${p('leaf2.key')}"\n`),
      /certificate 1 \(CN=localhost\) is not signed by certificate 2 \(CN=popwarden test CA\); order the file leaf first/,
    );
  });

  it('refuses a name the certificate does not cover: tls.server_names and SNI names', () => {
    oneLineError(check(`cert: "${ca.certFile}"\nkey: "${ca.keyFile}"\ntls:\n  server_names: [mail.example.org]\n`), /does not cover mail\.example\.org from tls\.server_names/);
    const wild = makeNamedCertificate(dir, 'wild', ['*.example.net']);
    const sni = `tls:\n  server_names: [pop.example.net]\n  certificates:\n    - names: ["*.example.net", "mail.example.net"]\n      cert: "${wild.certFile}"\n      key: "${wild.keyFile}"\n`;
    assert.equal(check(`cert: "${ca.certFile}"\nkey: "${ca.keyFile}"\n${sni}`).status, 0);
    const wrong = `tls:\n  certificates:\n    - names: ["mail.example.org"]\n      cert: "${wild.certFile}"\n      key: "${wild.keyFile}"\n`;
    oneLineError(check(`cert: "${ca.certFile}"\nkey: "${ca.keyFile}"\n${wrong}`), /does not cover mail\.example\.org, which tls\.certificates serves it for/);
  });

  it('warns on stderr, exit 0, when a certificate expires within 14 days', () => {
    const soon = makeNamedCertificate(dir, 'soon', ['localhost'], 5);
    const run = check(`cert: "${soon.certFile}"\nkey: "${soon.keyFile}"\n`);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /^popwarden: WARNING: cert .*soon\.crt \(CN=localhost\) expires in 4 days/);
  });
});
