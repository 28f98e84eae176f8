import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { MIN_TLS_VERSION } from '../tls/policy.js';
import type { ConnectionOptions } from 'node:tls';
import type { BackendConfig } from '../config/types.js';
import { backendKey } from '../config/backend-keys.js';
import { isLocalBackend } from './local-link.js';

/**
 * How popwarden verifies a backend's certificate (after STLS, or on a POP3S port), and the client
 * certificate it shows if the backend wants one; computed once at startup so no login
 * reads a file. Without --backend-ca the system trust store applies; --backend-tls-insecure turns
 * verification off for self-signed legacy hosts (the link is still encrypted, and the operator
 * was warned at startup).
 */
export function backendTlsOptions(backend: BackendConfig): ConnectionOptions {
  // A UNIX socket or a program has no host name: its certificate must name localhost, unless
  // backend_tls_servername says otherwise.
  const host = backend.address.kind === 'tcp' ? backend.address.host : 'localhost';
  const servername = backend.tlsServerName ?? (isIP(host) === 0 ? host : undefined);
  return {
    // The name checked without a servername (an IP address): Node would check "localhost" on a
    // socket it did not dial itself, and so accept a localhost certificate for any address.
    host,
    minVersion: MIN_TLS_VERSION,
    rejectUnauthorized: !backend.tlsInsecure,
    ...(backend.caFile === undefined ? {} : { ca: readFileSync(backend.caFile) }),
    ...(backend.clientCertFile === undefined || backend.clientKeyFile === undefined
      ? {}
      : { cert: readFileSync(backend.clientCertFile), key: readFileSync(backend.clientKeyFile) }),
    ...(servername === undefined ? {} : { servername }),
  };
}

/** Why a TLS handshake with the backend failed, as a short word, and the setting that fixes it. */
export interface BackendTlsProblem {
  readonly reason: 'tls-untrusted' | 'tls-name-mismatch' | 'tls-expired' | 'tls-failed';
  readonly fix: string;
}

/** OpenSSL's verification codes for a chain that leads to no CA popwarden trusts. */
const UNTRUSTED_CHAIN_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

/**
 * Explains a failed backend TLS handshake (`error` as Node's TLS layer raised it, directly or
 * as a cause) in operator's terms: which setting to change. Undefined if it was no TLS error.
 */
export function describeBackendTlsFailure(error: unknown, backend: BackendConfig): BackendTlsProblem | undefined {
  let cause: unknown = error;
  while (cause instanceof Error && cause.cause !== undefined && (cause as { code?: string }).code?.startsWith('E_BACKEND') === true) {
    cause = cause.cause;
  }
  const code = (cause as { code?: unknown } | undefined)?.code;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (typeof code !== 'string') return undefined;
  const orOff = isLocalBackend(backend.address) && backend.tls !== 'implicit' ? `, or set ${backendKey(backend, 'tls')}: off for this loopback backend` : '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return {
      reason: 'tls-name-mismatch',
      fix: `the backend's certificate does not cover the name popwarden checks (${message}): set ${backendKey(backend, 'tls_servername')} to a name in the certificate${orOff}`,
    };
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return { reason: 'tls-expired', fix: `the backend's certificate is not valid now (${code}): renew it on the backend${orOff}` };
  }
  if (UNTRUSTED_CHAIN_CODES.has(code)) {
    return {
      reason: 'tls-untrusted',
      fix: `the backend's certificate is not signed by a CA popwarden trusts (${code}): set ${backendKey(backend, 'ca')} to the PEM file of the CA that signed it${orOff}`,
    };
  }
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code === 'ECONNRESET') {
    return { reason: 'tls-failed', fix: `the TLS handshake with the backend failed (${code}: ${message}): check the backend's TLS settings${orOff}` };
  }
  return undefined;
}
