/**
 * A throwaway certificate authority and a server certificate it signs, made with openssl at test
 * time (never committed): what a TLS scanner needs to judge popwarden's policy rather than
 * complain about a self-signed test certificate.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from './scratch.js';

export interface TestCa {
  readonly dir: string;
  /** The CA certificate clients and scanners trust. */
  readonly caFile: string;
  /** The server's chain (leaf, then the CA) and key. */
  readonly certFile: string;
  readonly keyFile: string;
}

/** A client certificate (clientAuth) signed by `ca`, for backends that demand one. */
export function createClientCertificate(ca: TestCa, commonName: string): { certFile: string; keyFile: string } {
  const path = (name: string): string => join(ca.dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-keyout', path('client-key.pem'), '-out', path('client.csr'));
  writeFileSync(path('client.ext'), ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'].join('\n'));
  openssl('x509', '-req', '-in', path('client.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
    '-days', '30', '-sha256', '-extfile', path('client.ext'), '-out', path('client.pem'));
  return { certFile: path('client.pem'), keyFile: path('client-key.pem') };
}

/** Creates a CA and a 90-day RSA-2048 server certificate for localhost and 127.0.0.1. */
export function createTestCa(): TestCa {
  const dir = scratchDir('popwarden-ca');
  const path = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '365', '-subj', '/CN=popwarden test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', path('ca.key'), '-out', path('ca.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', path('key.pem'), '-out', path('leaf.csr'));
  // A CRL distribution point, so scanners see that revocation information exists; nothing fetches it.
  writeFileSync(
    path('leaf.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      'crlDistributionPoints=URI:http://localhost/popwarden-test-ca.crl',
    ].join('\n'),
  );
  openssl('x509', '-req', '-in', path('leaf.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
    '-days', '90', '-sha256', '-extfile', path('leaf.ext'), '-out', path('leaf.pem'));
  execFileSync('sh', ['-c', `cat "${path('leaf.pem')}" "${path('ca.pem')}" > "${path('chain.pem')}"`]);
  return { dir, caFile: path('ca.pem'), certFile: path('chain.pem'), keyFile: path('key.pem') };
}
