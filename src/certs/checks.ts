/**
 * Certificate checks: a pair belongs together, a chain is in order, a certificate covers the
 * names it is served for, and it is not expired. Logged at every load; for --check-config, one
 * line each.
 */
import type { X509Certificate } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Config } from '../config/types.js';
import { createLogger, type Logger } from '../observability/log.js';
import { TlsMaterialError } from '../tls/material-error.js';
import { tlsPolicy } from '../tls/policy.js';
import { canonicalServerName, sniLookup } from '../tls/sni.js';
import { certificateChain, parseCertificate, parsePrivateKey, readPem, type CertificateFiles } from './pem.js';
import { loadPfx } from './pkcs12.js';

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
export async function checkOperatorFiles(files: CertificateFiles, certPem: Buffer, keyPem: Buffer, log: Logger): Promise<void> {
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

/** --check-config warns when a certificate expires within this many days. */
export const EXPIRY_WARNING_DAYS = 14;

const describeCert = (cert: X509Certificate): string => cert.subject.replaceAll('\n', ', ');

/** Leaf first, then each issuer: clients build the path from what we send, in that order (RFC 8446 §4.4.2). */
function checkChainOrder(chain: readonly X509Certificate[], path: string): void {
  for (let i = 0; i + 1 < chain.length; i++) {
    const cert = chain[i];
    const issuer = chain[i + 1];
    if (cert === undefined || issuer === undefined) continue;
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
      throw new TlsMaterialError(
        `cert ${path}: certificate ${i + 1} (${describeCert(cert)}) is not signed by certificate ${i + 2} (${describeCert(issuer)}); order the file leaf first, then each issuer`,
      );
    }
  }
}

/** Whether a leaf covers a name a client uses; a wildcard name is checked with a sample label. */
function covers(leaf: X509Certificate, name: string): boolean {
  if (isIP(name) !== 0) return leaf.checkIP(name) !== undefined;
  const probe = name.startsWith('*.') ? `popwarden-check${name.slice(1)}` : name;
  return leaf.checkHost(probe, { wildcards: true }) !== undefined;
}

/**
 * For --check-config: every configured certificate parses, belongs to its key, lists its chain in
 * order, and covers the names it is served for (its SNI names; tls.server_names by the
 * certificate SNI would pick). Throws TlsMaterialError (one line) for what would break clients;
 * returns warnings (a certificate expiring within 14 days). Nothing is generated or logged; the
 * self-signed pair is not checked.
 */
export async function checkConfiguredCertificate(config: Config, now = new Date()): Promise<string[]> {
  const warnings: string[] = [];
  const leaves = new Map<string, { leaf: X509Certificate; path: string }>();
  const checkPair = async (certFile: string, keyFile: string): Promise<X509Certificate> => {
    const [cert, key] = await Promise.all([readPem(certFile, 'certificate'), readPem(keyFile, 'key')]);
    checkPairMatches({ certFile, keyFile }, cert, key);
    const chain = certificateChain(cert, certFile);
    checkChainOrder(chain, certFile);
    const leaf = chain[0] as X509Certificate;
    const daysLeft = (Date.parse(leaf.validTo) - now.getTime()) / 86_400_000;
    if (daysLeft <= 0) throw new TlsMaterialError(`cert ${certFile} (${describeCert(leaf)}) EXPIRED on ${leaf.validTo}`);
    if (daysLeft <= EXPIRY_WARNING_DAYS) {
      warnings.push(`cert ${certFile} (${describeCert(leaf)}) expires in ${Math.floor(daysLeft)} days, on ${leaf.validTo}; renew it and reload`);
    }
    return leaf;
  };

  let defaultLeaf: { leaf: X509Certificate; path: string } | undefined;
  const { certFile, keyFile, pfxFile } = config.tls;
  if (certFile !== undefined && keyFile !== undefined) defaultLeaf = { leaf: await checkPair(certFile, keyFile), path: certFile };
  else if (pfxFile !== undefined) {
    const pfx = await loadPfx(pfxFile, config.tls.pfxPassphraseFile, tlsPolicy(config.tls), createLogger('silent'));
    defaultLeaf = { leaf: pfx.leaf, path: pfxFile };
  }
  for (const entry of config.tls.certificates) {
    const leaf = await checkPair(entry.certFile, entry.keyFile);
    for (const name of entry.names) {
      if (!covers(leaf, name)) {
        throw new TlsMaterialError(`cert ${entry.certFile} (${describeCert(leaf)}) does not cover ${name}, which tls.certificates serves it for; its names: ${leaf.subjectAltName ?? 'none'}`);
      }
      leaves.set(canonicalServerName(name), { leaf, path: entry.certFile });
    }
  }
  for (const name of config.tls.serverNames) {
    const chosen = (isIP(name) === 0 ? sniLookup(leaves, name) : undefined) ?? defaultLeaf;
    if (chosen === undefined) continue; // self-signed: made for this host's names at first start
    if (!covers(chosen.leaf, name)) {
      throw new TlsMaterialError(`cert ${chosen.path} (${describeCert(chosen.leaf)}) does not cover ${name} from tls.server_names; its names: ${chosen.leaf.subjectAltName ?? 'none'}`);
    }
  }
  return warnings;
}
