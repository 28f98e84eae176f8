import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { BackendConfig } from '../config/types.js';

/**
 * How popwarden verifies a backend's certificate (after STLS, or on a POP3S port), and the client
 * certificate it shows if the backend wants one; computed once at startup so no login
 * reads a file. Without --backend-ca the system trust store applies; --backend-tls-insecure turns
 * verification off for self-signed legacy hosts (the link is still encrypted, and the operator
 * was warned at startup).
 */
export function backendTlsOptions(backend: BackendConfig): ConnectionOptions {
  const servername = backend.tlsServerName ?? (isIP(backend.host) === 0 ? backend.host : undefined);
  return {
    minVersion: 'TLSv1.2',
    rejectUnauthorized: !backend.tlsInsecure,
    ...(backend.caFile === undefined ? {} : { ca: readFileSync(backend.caFile) }),
    ...(backend.clientCertFile === undefined || backend.clientKeyFile === undefined
      ? {}
      : { cert: readFileSync(backend.clientCertFile), key: readFileSync(backend.clientKeyFile) }),
    ...(servername === undefined ? {} : { servername }),
  };
}
