/**
 * The default certificate, served when SNI picks no other: the operator's cert/key, a PKCS#12
 * bundle, or (when neither is configured) the self-signed pair made for this host in stateDir.
 */
import { hostname } from 'node:os';
import type { SecureContextOptions } from 'node:tls';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { checkOperatorFiles } from './checks.js';
import { parseCertificate, readPem, type CertificateFiles, type DefaultCredentials } from './pem.js';
import { loadPfx } from './pkcs12.js';
import { ensureSelfSigned } from './self-signed.js';

/** Host names the first-run certificate covers: what a local test client or the host's own name would use. */
export function selfSignedHosts(): string[] {
  const names = ['localhost', '127.0.0.1', '::1'];
  const own = hostname();
  // A host name with odd characters (containers use hex IDs, which are fine) would make a bad SAN.
  if (/^[A-Za-z0-9.-]{1,253}$/.test(own) && !names.includes(own)) names.push(own);
  return names;
}

/** The default certificate: cert/key, a PKCS#12 bundle, or the self-signed pair in stateDir. */
export async function loadDefaultCredentials(config: Config, base: SecureContextOptions, log: Logger): Promise<DefaultCredentials> {
  if (config.tls.pfxFile !== undefined) return loadPfx(config.tls.pfxFile, config.tls.pfxPassphraseFile, base, log);
  const { certFile, keyFile } = config.tls;
  let files: CertificateFiles;
  if (certFile !== undefined && keyFile !== undefined) files = { certFile, keyFile };
  else files = await ensureSelfSigned(config.stateDir, selfSignedHosts(), log);
  const [cert, key] = await Promise.all([readPem(files.certFile, 'certificate'), readPem(files.keyFile, 'key')]);
  if (certFile !== undefined) await checkOperatorFiles(files, cert, key, log);
  return {
    options: { cert, key },
    leaf: parseCertificate(cert, files.certFile),
    what: `cert ${files.certFile} with key ${files.keyFile}`,
    files: certFile === undefined ? [] : [files.certFile, files.keyFile],
  };
}
