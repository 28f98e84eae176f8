import type { ConnectionRefusal } from '../observability/metrics.js';

export type Admission =
  | { readonly kind: 'admitted'; readonly release: () => void }
  | { readonly kind: 'refused'; readonly reason: ConnectionRefusal };

/**
 * Decides at TCP accept, before any TLS or POP3 work, whether a client may connect at all: deny
 * lists, concurrent sessions per IP, new connections per IP per second. Synchronous and
 * in-process: it must cost nothing on the accept path. `release` is called once when the
 * connection ends.
 */
export interface ConnectionGate {
  /**
   * `makeRoom`: called when a process-wide bound is full; it may close an idle connection and
   * release its place (true), and the new one is admitted after all. `returning`: the account
   * whose login from this address succeeded lately (ReturningClients.accountOf), so the share of
   * the bound kept for such clients is open to it, up to that account's part; undefined for a
   * stranger.
   */
  admit(ip: string, makeRoom?: () => boolean, returning?: string): Admission;
  /** A session from `ip` ended in a protocol error (session/close-reasons.ts, PROTOCOL_ERRORS). */
  protocolError(ip: string): void;
}

/** Every connection is admitted. */
export const OPEN_GATE: ConnectionGate = {
  admit: () => ({ kind: 'admitted', release: () => undefined }),
  protocolError: () => undefined,
};
