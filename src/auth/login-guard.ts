import type { LimiterName } from '../observability/metrics.js';

/**
 * One login attempt as the failed-login protection sees it. `password` is only valid during the
 * synchronous part of a call: the session wipes it right after. A guard that needs something
 * derived from it (the keyed digest that recognises a stale device's repeated password) must
 * derive it before its first await, and never keep the password itself.
 */
export interface LoginAttempt {
  /** The client's address, normalised (IPv4-mapped IPv6 as IPv4). */
  readonly ip: string;
  /** The username as the client typed it (latin1, one character per byte). */
  readonly user: string;
  readonly password: Buffer;
}

/** The decision before a login reaches the backend. */
export type GuardDecision =
  | { readonly kind: 'allowed' }
  | { readonly kind: 'limited'; readonly retryMs: number; readonly limiter: LimiterName };

/**
 * Failed-login protection, consulted by the session around every backend login: `check` before
 * the backend sees the attempt (a blocked guess is never forwarded, even with the right
 * password), then `recordFailure` when the backend refused the credentials or `recordSuccess`
 * when it accepted them. Store trouble is the guard's own business (fallback or fail-closed);
 * these calls never throw and never wait longer than the guard's own deadline.
 */
export interface LoginGuard {
  check(attempt: LoginAttempt): Promise<GuardDecision>;
  recordFailure(attempt: LoginAttempt): Promise<void>;
  recordSuccess(attempt: LoginAttempt): Promise<void>;
  /** Releases connections to the store. */
  close(): Promise<void>;
}

/** No protection beyond the failure delay (tests of other parts). */
export const ALLOW_ALL: LoginGuard = {
  check: () => Promise.resolve({ kind: 'allowed' }),
  recordFailure: () => Promise.resolve(),
  recordSuccess: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
