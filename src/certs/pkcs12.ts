/**
 * PKCS#12 bundles OpenSSL 3 will not open: files exported with RC2-40 or 3DES (older Windows and
 * Java tools, `openssl pkcs12 -export -legacy`) fail in Node with "Unsupported PKCS12 PFX data"
 * because the legacy provider is not loaded. node-forge still reads them; the result is handed
 * to OpenSSL as PEM, so forge never verifies anything, it only unwraps (ECOSYSTEM.md §5).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import forge from 'node-forge';

export interface PemCredentials {
  /** The chain as PEM, leaf first, each certificate followed by its issuer where the bundle has it. */
  readonly certPem: string;
  readonly keyPem: string;
}

/** Decodes a PKCS#12 bundle with node-forge and returns its key and ordered chain as PEM; throws on a wrong passphrase or no key. */
export function pkcs12ToPem(der: Buffer, passphrase: string): PemCredentials {
  const asn1 = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  const p12 = forge.pkcs12.pkcs12FromAsn1(asn1, false, passphrase);
  const bagsOf = (oid: string | undefined): forge.pkcs12.Bag[] => (oid === undefined ? [] : (p12.getBags({ bagType: oid })[oid] ?? []));
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
