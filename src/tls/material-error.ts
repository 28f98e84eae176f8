/**
 * The one error for TLS material popwarden cannot use: a certificate, key, PKCS#12 bundle or
 * ticket key file, or a policy the operator must opt in to. Startup prints its message as the one
 * stderr line; a reload that meets it keeps the old material.
 */

/** Problems with the certificate or key files; the message is one line for the operator. */
export class TlsMaterialError extends Error {
  readonly code = 'E_TLS_MATERIAL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TlsMaterialError';
  }
}
