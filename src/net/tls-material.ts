/**
 * The TLS material the listeners serve (the default context, the SNI contexts, the server
 * options, the ticket keys), built in one piece from the certificates under the policy, so a
 * reload either swaps all of it or keeps the old.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { checkOperatorFiles } from '../certs/checks.js';
import { loadDefaultCredentials } from '../certs/default-certificate.js';
import { parseCertificate, readPem } from '../certs/pem.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { TlsMaterialError } from '../tls/material-error.js';
import { isLegacyTlsVersion, tlsPolicy } from '../tls/policy.js';
import { canonicalServerName, sniLookup } from '../tls/sni.js';
import { readTicketKeys } from '../tls/ticket-keys.js';

/** The TLS side of popwarden's listeners: one context for implicit TLS and for STLS upgrades. */
export interface TlsMaterial {
  /** Used for sockets upgraded by STLS (new tls.TLSSocket(..., { secureContext })). */
  readonly secureContext: SecureContext;
  /** Options for tls.createServer (policy + certificate), the same policy as secureContext. */
  readonly serverOptions: TlsOptions;
  /** The certificates served (each leaf: the default one first, then the SNI ones), for the expiry metric. */
  readonly certificates?: readonly { readonly name: string; readonly notAfter: Date }[];
  /**
   * SNI: the context for the name a client asked for, or undefined for the default one. Used as
   * the SNICallback on implicit-TLS listeners and after STLS.
   */
  readonly contextFor?: (servername: string) => SecureContext | undefined;
  /** The 48-byte session ticket keys every context here encrypts tickets with. */
  readonly ticketKeys?: Buffer | undefined;
  /** Files this material was read from (certificates, keys, pfx, ticket keys), for tls.watch_files. */
  readonly files?: readonly string[];
  /**
   * limits.max_handshakes_per_ip at STLS: a release function, or undefined when `address` has too
   * many handshakes in progress. Absent: no bound. `evict` closes the connection when
   * limits.max_handshakes is full and this is the oldest handshake past the age floor.
   */
  readonly beginHandshake?: (address: string, evict?: () => void) => (() => void) | undefined;
}

const subjectName = (cert: X509Certificate): string =>
  /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? cert.subject.replaceAll('\n', ', ');

function makeContext(options: SecureContextOptions, what: string): SecureContext {
  try {
    return createSecureContext(options);
  } catch (error) {
    throw new TlsMaterialError(`cannot use ${what}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Reads the configured certificates (the default one: cert/key, or a self-signed pair made in
 * stateDir when none is configured; plus the SNI ones), checks each pair belongs together, reads
 * the ticket keys, and builds the contexts and server options under the configured policy.
 * Throws TlsMaterialError; nothing is half-applied, so a reload can simply keep the old material.
 */
export async function loadTlsMaterial(config: Config, log: Logger): Promise<TlsMaterial> {
  const policy = tlsPolicy(config.tls);
  if (isLegacyTlsVersion(policy.minVersion)) {
    log.warn({ minVersion: policy.minVersion }, 'LEGACY TLS PROTOCOLS ENABLED (tls.allow_legacy_protocols): TLS 1.0/1.1 are broken; @SECLEVEL=0 is in effect');
  }
  const ticketKeys = await readTicketKeys(config.tls.ticketKeysFile, log);
  const base = { ...policy, ticketKeys };

  const main = await loadDefaultCredentials(config, base, log);
  const options = { ...base, ...main.options };
  const secureContext = makeContext(options, main.what);
  const leaf = main.leaf;
  const certificates = [{ name: subjectName(leaf), notAfter: new Date(leaf.validTo) }];
  const files = [...main.files];

  const byName = new Map<string, SecureContext>();
  for (const entry of config.tls.certificates) {
    const [cert, key] = await Promise.all([readPem(entry.certFile, 'certificate'), readPem(entry.keyFile, 'key')]);
    await checkOperatorFiles(entry, cert, key, log);
    const context = makeContext({ ...base, cert, key }, `cert ${entry.certFile} with key ${entry.keyFile}`);
    for (const name of entry.names) byName.set(canonicalServerName(name), context);
    const sniLeaf = parseCertificate(cert, entry.certFile);
    certificates.push({ name: subjectName(sniLeaf), notAfter: new Date(sniLeaf.validTo) });
    files.push(entry.certFile, entry.keyFile);
  }
  if (config.tls.ticketKeysFile !== undefined) files.push(config.tls.ticketKeysFile);

  return {
    secureContext,
    serverOptions: { ...options, handshakeTimeout: config.timeouts.tlsHandshakeMs },
    certificates,
    contextFor: (servername) => sniLookup(byName, servername),
    ticketKeys,
    files,
  };
}
