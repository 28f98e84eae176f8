/**
 * The TLS policy clients meet, on implicit TLS and after STLS: protocol versions, cipher suites,
 * key-exchange groups, and the operator's opt-in to the broken TLS 1.0/1.1.
 */
import { constants as cryptoConstants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import { TlsMaterialError } from './material-error.js';

/** The protocol versions an operator may name (tls.min_version), and the metrics' version label. */
export const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/**
 * The oldest version without a known break: the default floor for clients (tls.min_version) and
 * the fixed floor toward the backend.
 */
export const MIN_TLS_VERSION = 'TLSv1.2' satisfies TlsVersion;

/** TLS 1.0 and 1.1 (RFC 8996 deprecates them): allowed only with tls.allow_legacy_protocols. */
export function isLegacyTlsVersion(version: string | undefined): boolean {
  return version === 'TLSv1' || version === 'TLSv1.1';
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

/** tls.ciphers by default: the list above as an OpenSSL cipher string. */
export const DEFAULT_TLS_CIPHERS = MOZILLA_INTERMEDIATE_TLS12_CIPHERS.join(':');

/** tls.groups by default: the key-exchange groups in preference order (Node's ecdhCurve). */
export const DEFAULT_TLS_GROUPS = 'X25519:prime256v1:secp384r1';

/** Sessions resumed on one popwarden must not be resumable by another TLS service sharing the cert. */
export const SESSION_ID_CONTEXT = 'popwarden-pop3';

/**
 * The policy shared by implicit TLS and STLS: Mozilla intermediate. The server does not impose
 * its cipher order (every suite left is strong, and clients know whether they have AES hardware).
 * Renegotiation is off entirely: POP3 has no use for it, and it is a CPU-exhaustion lever.
 */
export const TLS_POLICY = Object.freeze({
  minVersion: MIN_TLS_VERSION,
  ciphers: DEFAULT_TLS_CIPHERS,
  honorCipherOrder: false,
  ecdhCurve: DEFAULT_TLS_GROUPS,
  // OpenSSL 3 builds have no compression at all; the flag says so should one ever be linked (CRIME).
  secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION | cryptoConstants.SSL_OP_NO_COMPRESSION,
  sessionIdContext: SESSION_ID_CONTEXT,
} as const satisfies SecureContextOptions);

/**
 * Mozilla "old" TLS 1.0/1.1 suites (ECDHE + AES-CBC-SHA1), appended only when the operator opted
 * in to legacy protocols and kept the default cipher list: the GCM and CHACHA suites are TLS 1.2
 * only, so without these a TLS 1.0 client would still find nothing to agree on.
 */
const LEGACY_CIPHERS = 'ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA';

/** The tls.* settings the policy reads (a Config's `tls` has them, defaults filled in by the config loader). */
export interface TlsPolicySettings {
  readonly minVersion: TlsVersion;
  readonly allowLegacyProtocols: boolean;
  readonly ciphers: string;
  readonly groups: string;
}

/** The policy for this config: TLS_POLICY with tls.min_version, tls.ciphers and tls.groups applied. */
export function tlsPolicy(tls: TlsPolicySettings): SecureContextOptions {
  const minVersion = tls.minVersion;
  const legacy = isLegacyTlsVersion(minVersion);
  if (legacy && !tls.allowLegacyProtocols) {
    throw new TlsMaterialError(`tls.min_version ${minVersion} needs tls.allow_legacy_protocols: true`);
  }
  let ciphers = tls.ciphers;
  if (legacy) {
    if (ciphers === TLS_POLICY.ciphers) ciphers = `${ciphers}:${LEGACY_CIPHERS}`;
    // OpenSSL 3's default security level 1 refuses TLS 1.0/1.1 (SHA-1 in the handshake).
    if (!ciphers.includes('@SECLEVEL=')) ciphers = `${ciphers}:@SECLEVEL=0`;
  }
  return { ...TLS_POLICY, minVersion, ciphers, ecdhCurve: tls.groups };
}
