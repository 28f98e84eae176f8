import { X509Certificate, constants as cryptoConstants, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { ensureSelfSigned } from '../certs/self-signed.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';

/** The TLS side of popwarden's listeners: one context for implicit TLS and for STLS upgrades. */
export interface TlsMaterial {
  /** Used for sockets upgraded by STLS (new tls.TLSSocket(..., { secureContext })). */
  readonly secureContext: SecureContext;
  /** Options for tls.createServer (policy + certificate), the same policy as secureContext. */
  readonly serverOptions: TlsOptions;
  /** The certificate every listener serves (the leaf of the chain), for the expiry metric. */
  readonly certificates?: readonly { readonly name: string; readonly notAfter: Date }[];
}

/**
 * Mozilla's "intermediate" TLS 1.2 suites: forward secret AEAD only. TLS 1.3 suites are not
 * listed, so OpenSSL keeps its defaults for them (all three are AEAD already).
 */
export const MOZILLA_INTERMEDIATE_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const;

export const ECDH_CURVES = 'X25519:prime256v1:secp384r1';

/** Sessions resumed on one popwarden must not be resumable by another TLS service sharing the cert. */
export const SESSION_ID_CONTEXT = 'popwarden-pop3';

/** Host names the first-run certificate covers: what a local test client or the host's own name would use. */
export function selfSignedHosts(): string[] {
  const names = ['localhost', '127.0.0.1', '::1'];
  const own = hostname();
  // A host name with odd characters (containers use hex IDs, which are fine) would make a bad SAN.
  if (/^[A-Za-z0-9.-]{1,253}$/.test(own) && !names.includes(own)) names.push(own);
  return names;
}

/** Problems with the certificate or key files; the message is one line for the operator. */
export class TlsMaterialError extends Error {
  readonly code = 'E_TLS_MATERIAL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TlsMaterialError';
  }
}

/**
 * The policy shared by implicit TLS and STLS: Mozilla intermediate. The server does not impose
 * its cipher order (every suite left is strong, and clients know whether they have AES hardware).
 * Renegotiation is off entirely: POP3 has no use for it, and it is a CPU-exhaustion lever.
 */
export const TLS_POLICY = Object.freeze({
  minVersion: 'TLSv1.2',
  ciphers: MOZILLA_INTERMEDIATE_TLS12_CIPHERS.join(':'),
  honorCipherOrder: false,
  ecdhCurve: ECDH_CURVES,
  secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
  sessionIdContext: SESSION_ID_CONTEXT,
} as const satisfies SecureContextOptions);

interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new TlsMaterialError(`cannot read the TLS ${what} ${path} (${code})`, { cause: error });
  }
}

function parseCertificate(pem: Buffer, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new TlsMaterialError(`cert ${path} is not a PEM certificate`, { cause: error });
  }
}

function parsePrivateKey(pem: Buffer, path: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    const encrypted = pem.includes('ENCRYPTED');
    const reason = encrypted ? 'is encrypted; popwarden needs an unencrypted key (protect it with file mode 0600)' : 'is not a PEM private key';
    throw new TlsMaterialError(`key ${path} ${reason}`, { cause: error });
  }
}

/** The operator's pair must parse and belong together; anything else cannot serve a single handshake. */
function checkPairMatches(files: CertificateFiles, certPem: Buffer, keyPem: Buffer): X509Certificate {
  const cert = parseCertificate(certPem, files.certFile);
  const key = parsePrivateKey(keyPem, files.keyFile);
  if (!cert.checkPrivateKey(key)) {
    throw new TlsMaterialError(`key ${files.keyFile} does not belong to cert ${files.certFile}; check that the pair was deployed together`);
  }
  return cert;
}

/** Operator-supplied files are checked, never fixed: warnings for what is risky, errors for what cannot work. */
async function checkOperatorFiles(files: CertificateFiles, certPem: Buffer, keyPem: Buffer, log: Logger): Promise<void> {
  const cert = checkPairMatches(files, certPem, keyPem);
  const now = Date.now();
  const facts = { certFile: files.certFile, subject: cert.subject.replaceAll('\n', ', '), fingerprint256: cert.fingerprint256, validTo: cert.validTo };
  if (Date.parse(cert.validTo) <= now) log.error(facts, 'TLS certificate has EXPIRED: clients will refuse to connect');
  else if (Date.parse(cert.validFrom) > now) log.error(facts, 'TLS certificate is not valid yet: check the clock');
  else log.info(facts, 'TLS certificate loaded');
  if (((await stat(files.keyFile)).mode & 0o077) !== 0) {
    log.warn({ keyFile: files.keyFile }, 'TLS key file is readable by group or others; chmod 600 it');
  }
}

/**
 * For --check-config: the configured cert and key parse and belong together. Nothing is generated
 * and nothing is logged; without cert/key there is nothing to check yet.
 */
export async function checkConfiguredCertificate(config: Config): Promise<void> {
  const { certFile, keyFile } = config.tls;
  if (certFile === undefined || keyFile === undefined) return;
  const [cert, key] = await Promise.all([readPem(certFile, 'certificate'), readPem(keyFile, 'key')]);
  checkPairMatches({ certFile, keyFile }, cert, key);
}

/**
 * Reads the configured certificate and key (or makes a self-signed pair in stateDir when none is
 * configured), checks that they belong together, and builds the context and server options.
 */
export async function loadTlsMaterial(config: Config, log: Logger): Promise<TlsMaterial> {
  const { certFile, keyFile } = config.tls;
  let files: CertificateFiles;
  if (certFile !== undefined && keyFile !== undefined) files = { certFile, keyFile };
  else files = await ensureSelfSigned(config.stateDir, selfSignedHosts(), log);

  const [cert, key] = await Promise.all([readPem(files.certFile, 'certificate'), readPem(files.keyFile, 'key')]);
  if (certFile !== undefined) await checkOperatorFiles(files, cert, key, log);

  const options = { ...TLS_POLICY, cert, key };
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext(options);
  } catch (error) {
    throw new TlsMaterialError(`cannot use cert ${files.certFile} with key ${files.keyFile}: ${(error as Error).message}`, { cause: error });
  }
  const leaf = parseCertificate(cert, files.certFile);
  const commonName = /^CN=(.*)$/m.exec(leaf.subject)?.[1];
  return {
    secureContext,
    serverOptions: { ...options, handshakeTimeout: config.timeouts.tlsHandshakeMs },
    certificates: [{ name: commonName ?? leaf.subject.replaceAll('\n', ', '), notAfter: new Date(leaf.validTo) }],
  };
}
