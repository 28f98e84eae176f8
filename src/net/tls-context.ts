import type { SecureContext, TlsOptions } from 'node:tls';

/** The TLS side of popwarden's listeners: one context for implicit TLS and for STLS upgrades. */
export interface TlsMaterial {
  /** Used for sockets upgraded by STLS (new tls.TLSSocket(..., { secureContext })). */
  readonly secureContext: SecureContext;
  /** Options for tls.createServer (policy + certificate), the same policy as secureContext. */
  readonly serverOptions: TlsOptions;
}
