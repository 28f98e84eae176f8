/**
 * PKCS#12 certificates (tls.pfx). Node opens current bundles itself, but OpenSSL 3 will not open
 * files exported with RC2-40 or 3DES (older Windows and Java tools, `openssl pkcs12 -export
 * -legacy`): they fail in Node with "Unsupported PKCS12 PFX data" because the legacy provider is
 * not loaded. node-forge still reads them; the result is handed to OpenSSL as PEM, so forge never
 * verifies anything, it only unwraps (ECOSYSTEM.md §5).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type forgeTypes from 'node-forge';
import { nodeForge } from './forge.js';
import type { Logger } from '../observability/log.js';
import { TlsMaterialError } from '../tls/material-error.js';
import { parseCertificate, readPem, type DefaultCredentials } from './pem.js';

export interface PemCredentials {
  /** The chain as PEM, leaf first, each certificate followed by its issuer where the bundle has it. */
  readonly certPem: string;
  readonly keyPem: string;
}

/** Decodes a PKCS#12 bundle with node-forge and returns its key and ordered chain as PEM; throws on a wrong passphrase or no key. */
export function pkcs12ToPem(der: Buffer, passphrase: string): PemCredentials {
  const forge = nodeForge();
  const asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  const p12 = forge.pkcs12.pkcs12FromAsn1(asn1, false, passphrase);
  const bagsOf = (oid: string | undefined): forgeTypes.pkcs12.Bag[] => (oid === undefined ? [] : (p12.getBags({ bagType: oid })[oid] ?? []));
  const keyBags = [...bagsOf(forge.pki.oids['pkcs8ShroudedKeyBag']), ...bagsOf(forge.pki.oids['keyBag'])];
  const key = keyBags.find((bag) => bag.key !== undefined)?.key;
  if (key === undefined) throw new Error('the PKCS#12 file holds no private key popwarden can read (node-forge reads RSA keys only)');
  const keyPem = forge.pki.privateKeyToPem(key);
  const certs: X509Certificate[] = bagsOf(forge.pki.oids['certBag']).flatMap((bag) => (bag.cert === undefined ? [] : [new X509Certificate(forge.pki.certificateToPem(bag.cert))]));
  const privateKey = createPrivateKey(keyPem);
  const leaf = certs.find((cert) => cert.checkPrivateKey(privateKey));
  if (leaf === undefined) throw new Error('the PKCS#12 file holds no certificate for its private key');
  const chain = [leaf];
  const rest = certs.filter((cert) => cert !== leaf);
  for (;;) {
    const last = chain[chain.length - 1];
    const next = rest.findIndex((cert) => last !== undefined && last.issuer === cert.subject && last.subject !== cert.subject);
    if (next < 0) break;
    chain.push(...rest.splice(next, 1));
  }
  return { certPem: [...chain, ...rest].map((cert) => cert.toString()).join(''), keyPem };
}

/**
 * tls.pfx: Node's own PKCS#12 support first; a legacy RC2-40/3DES bundle that OpenSSL 3 refuses
 * ("Unsupported PKCS12 PFX data") is unwrapped with node-forge and used as PEM, with a warning.
 */
export async function loadPfx(pfxFile: string, passphraseFile: string | undefined, base: SecureContextOptions, log: Logger): Promise<DefaultCredentials> {
  const pfx = await readPem(pfxFile, 'PKCS#12 file');
  const passphrase = passphraseFile === undefined ? '' : (await readPem(passphraseFile, 'PKCS#12 passphrase file')).toString('utf8').replace(/\r?\n$/, '');
  const files = passphraseFile === undefined ? [pfxFile] : [pfxFile, passphraseFile];
  const what = `tls.pfx ${pfxFile}`;
  try {
    const context = createSecureContext({ ...base, pfx, passphrase });
    const der: unknown = context.context.getCertificate();
    if (!Buffer.isBuffer(der)) throw new TlsMaterialError(`${what} holds no certificate`);
    return { options: { pfx, passphrase }, leaf: new X509Certificate(der), what, files };
  } catch (error) {
    if (error instanceof TlsMaterialError) throw error;
    const message = (error as Error).message;
    if (!/unsupported/i.test(message)) {
      const hint = /mac verify|bad decrypt/i.test(message) ? ' (wrong passphrase?)' : '';
      throw new TlsMaterialError(`cannot use ${what}: ${message}${hint}`, { cause: error });
    }
    let pem;
    try {
      pem = pkcs12ToPem(pfx, passphrase);
    } catch (forgeError) {
      throw new TlsMaterialError(`cannot use ${what}: ${(forgeError as Error).message} (wrong passphrase?)`, { cause: forgeError });
    }
    log.warn({ pfx: pfxFile }, 'tls.pfx uses legacy PKCS#12 encryption (RC2-40/3DES) that OpenSSL 3 refuses; converted in memory. Re-export it with a current openssl pkcs12 -export (AES-256)');
    const cert = Buffer.from(pem.certPem);
    return { options: { cert, key: Buffer.from(pem.keyPem) }, leaf: parseCertificate(cert, pfxFile), what, files };
  }
}
