/**
 * The first-run certificate: popwarden must speak TLS from the first start, before an operator
 * has installed a real certificate, and Node's crypto can make keys but not X.509 certificates.
 * node-forge signs the certificate; the RSA key itself comes from Node's native generator, which is
 * about a hundred times faster than forge's JavaScript one.
 */
import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeForge } from './forge.js';
import type { Logger } from '../observability/log.js';
import { checkStateFile, ensureStateDir } from '../config/state-dir.js';

export const CERT_FILE_NAME = 'cert.pem';
export const KEY_FILE_NAME = 'key.pem';

/** One year: long enough that nobody is paged for it, short enough that a forgotten test cert dies. */
const VALIDITY_MS = 365 * 24 * 60 * 60 * 1000;
/** Backdated so a client whose clock runs a little slow does not see "not yet valid". */
const CLOCK_SKEW_MS = 60 * 60 * 1000;

export interface CertificatePair {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface SelfSignedFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** SHA-256 fingerprint as OpenSSL prints it ("AB:CD:..."), for users to compare in their client's warning. */
  readonly fingerprint256: string;
  /** True if this call made a new pair, false if it reused the one already in the directory. */
  readonly generated: boolean;
}

const generateRsaKeyPair = promisify(generateKeyPair);

/** A positive 127-bit serial: RFC 5280 §4.1.2.2 wants unique, positive, at most 20 octets. */
function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

/** Host names and IPs, deduplicated, in the order given; the first becomes the subject CN. */
function subjectAltNames(hosts: readonly string[]): { type: number; value?: string; ip?: string }[] {
  const DNS = 2;
  const IP = 7;
  return [...new Set(hosts)].map((host) => (isIP(host) === 0 ? { type: DNS, value: host } : { type: IP, ip: host }));
}

/** RSA-2048 (forge cannot sign ECDSA certificates), SHA-256, serverAuth, SANs for every host. */
export async function generateSelfSigned(hosts: readonly string[], now = new Date(), validityMs = VALIDITY_MS): Promise<CertificatePair> {
  const commonName = hosts[0];
  if (commonName === undefined) throw new Error('a self-signed certificate needs at least one host name');
  const { publicKey, privateKey } = await generateRsaKeyPair('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });

  const forge = nodeForge();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now.getTime() + validityMs);
  const subject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'popwarden self-signed' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: subjectAltNames(hosts) },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey };
}

/**
 * Writes the pair as DIR/cert.pem and DIR/key.pem. The key is written 0600 to a temporary name
 * and renamed, so a crash never leaves a readable or half-written key behind.
 */
export async function writeCertificatePair(dir: string, pair: CertificatePair): Promise<{ certFile: string; keyFile: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, CERT_FILE_NAME);
  const keyFile = join(dir, KEY_FILE_NAME);
  const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(keyFile + suffix, pair.keyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(certFile + suffix, pair.certPem, { mode: 0o644, flag: 'wx' });
  await rename(keyFile + suffix, keyFile);
  await rename(certFile + suffix, certFile);
  return { certFile, keyFile };
}

type ExistingPair =
  | { readonly usable: true; readonly cert: X509Certificate }
  | { readonly usable: false; readonly why: string };

/** Reuse keeps the fingerprint stable, so clients that accepted it once are not asked again. */
async function inspectExistingPair(certFile: string, keyFile: string, now: Date): Promise<ExistingPair> {
  let certPem: Buffer;
  let keyPem: Buffer;
  try {
    [certPem, keyPem] = await Promise.all([readFile(certFile), readFile(keyFile)]);
  } catch (error) {
    // Anything but "not there yet" (EACCES, EISDIR) is the operator's to fix, not ours to overwrite.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return { usable: false, why: 'no certificate yet' };
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return { usable: false, why: 'key does not match certificate' };
  } catch {
    return { usable: false, why: 'existing files are not a PEM certificate and key' };
  }
  if (new Date(cert.validTo).getTime() <= now.getTime()) return { usable: false, why: `expired on ${cert.validTo}` };
  return { usable: true, cert };
}

/**
 * Returns a self-signed pair in stateDir, generating one on first run (or when the old one is
 * expired or broken). Logs a warning with the fingerprint on every start: a self-signed
 * certificate is a stop-gap, and the operator should see it until they replace it.
 */
export async function ensureSelfSigned(
  stateDir: string,
  hosts: readonly string[],
  log: Logger,
  now = new Date(),
): Promise<SelfSignedFiles> {
  const certFile = join(stateDir, CERT_FILE_NAME);
  const keyFile = join(stateDir, KEY_FILE_NAME);
  ensureStateDir(stateDir);
  for (const file of [certFile, keyFile]) checkStateFile(file);
  const existing = await inspectExistingPair(certFile, keyFile, now);
  let cert: X509Certificate;
  if (existing.usable) {
    cert = existing.cert;
    // An operator (or a backup restore) may have loosened it; the key is ours to keep private.
    if (((await stat(keyFile)).mode & 0o077) !== 0) await chmod(keyFile, 0o600);
  } else {
    log.info({ certFile, reason: existing.why }, 'generating a self-signed certificate');
    const pair = await generateSelfSigned(hosts, now);
    await writeCertificatePair(stateDir, pair);
    cert = new X509Certificate(pair.certPem);
  }
  const generated = !existing.usable;
  log.warn(
    {
      certFile,
      fingerprint256: cert.fingerprint256,
      subjectAltName: cert.subjectAltName,
      validTo: cert.validTo,
      generated,
    },
    'USING A SELF-SIGNED CERTIFICATE: mail clients will warn about it; compare the SHA-256 fingerprint, ' +
      'then set cert and key to a real certificate',
  );
  return { certFile, keyFile, fingerprint256: cert.fingerprint256, generated };
}
