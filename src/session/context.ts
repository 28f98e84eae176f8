import type { Config, ListenerKind } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import type { BackendSession } from '../backend/login.js';
import type { Metrics } from '../observability/metrics.js';

/** How the client logged in, for the audit line. */
export type ClientMechanism = 'user' | 'plain' | 'login';

/**
 * The narrow view of a session that command handlers get: enough to reply, read a SASL
 * continuation and relay, and nothing that changes the session: state changes, STLS, the login
 * and the close are outcomes the session renders.
 */
export interface SessionContext {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly listenerKind: ListenerKind;
  /** True inside TLS (implicit, or after STLS). */
  readonly secure: boolean;
  /** The username given by USER in this TLS session, waiting for PASS. */
  readonly pendingUser: string | undefined;

  /** Writes raw bytes to the client (multi-line replies). */
  write(bytes: Buffer): void;
  /**
   * The next line the client sent, for SASL continuations. `too-long` when it exceeded the SASL
   * line bound; `closed` when the session ended while waiting.
   */
  readContinuation(): Promise<Buffer | 'too-long' | 'closed'>;

  /** The logged-in backend (TRANSACTION state only). */
  readonly backend: BackendSession;
  /** Writes relayed reply bytes (a view valid only during the call may be passed): false when the client is full. */
  writeToClient(chunk: Buffer): boolean;
  /** Resolves when the client has drained; rejects if it stalls for too long. */
  clientDrained(): Promise<void>;
}
