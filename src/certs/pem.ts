/**
 * Reading certificates and keys: PEM files in, parsed X509Certificate and KeyObject out (or, for
 * the default certificate, what createSecureContext takes), each failure a one-line
 * TlsMaterialError that names the file.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { SecureContextOptions } from 'node:tls';
import { TlsMaterialError } from '../tls/material-error.js';

/** A certificate file and the key file that belongs to it. */
export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/** A file of TLS material; `what` names it in the error ("certificate", "key", "PKCS#12 file"). */
export async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new TlsMaterialError(`cannot read the TLS ${what} ${path} (${code})`, { cause: error });
  }
}

/** The first certificate in a PEM file. */
export function parseCertificate(pem: Buffer, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new TlsMaterialError(`cert ${path} is not a PEM certificate`, { cause: error });
  }
}

/** An unencrypted PEM private key; an encrypted one gets its own explanation. */
export function parsePrivateKey(pem: Buffer, path: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    const encrypted = pem.includes('ENCRYPTED');
    const reason = encrypted ? 'is encrypted; popwarden needs an unencrypted key (protect it with file mode 0600)' : 'is not a PEM private key';
    throw new TlsMaterialError(`key ${path} ${reason}`, { cause: error });
  }
}

/** Every certificate in a PEM file, in file order. */
export function certificateChain(pem: Buffer, path: string): X509Certificate[] {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TlsMaterialError(`cert ${path} is not a PEM certificate`);
  return blocks.map((block) => parseCertificate(Buffer.from(block), path));
}

/** Credentials as createSecureContext takes them, with the leaf for the expiry gauge and the logs. */
export interface DefaultCredentials {
  readonly options: Pick<SecureContextOptions, 'cert' | 'key' | 'pfx' | 'passphrase'>;
  readonly leaf: X509Certificate;
  readonly what: string;
  readonly files: string[];
}
