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

/**
 * What the backend made of a reserved attempt:
 * - `accepted`: it logged the user in;
 * - `refused`: it said the password is wrong (a verdict on the password);
 * - `unanswered`: the credentials were sent and the backend never answered (it timed out or hung
 *   up): counted like `refused`, since a backend that stalls failures (Dovecot's auth penalty)
 *   must not turn guesses into free ones;
 * - `not_judged`: no verdict on the password (backend down before the credentials were sent, a
 *   mailbox in use, a protocol error, no safe mechanism, the client gone before the backend).
 */
export type LoginVerdict = 'accepted' | 'refused' | 'unanswered' | 'not_judged';

/**
 * The decision before a login reaches the backend. An allowed attempt holds a reservation: it is
 * already counted against every limit, so attempts in flight at once can never exceed them, and
 * `settle` tells the guard what became of it (once; later calls do nothing): kept on `refused`
 * and `unanswered`, given back otherwise.
 */
export type GuardDecision =
  | { readonly kind: 'allowed'; settle(verdict: LoginVerdict): Promise<void> }
  | { readonly kind: 'limited'; readonly retryMs: number; readonly limiter: LimiterName };

/**
 * Failed-login protection, consulted by the session before every backend login: `reserve` before
 * the backend sees the attempt (a blocked guess is never forwarded, even with the right
 * password), then the decision's `settle` with the backend's verdict. Store trouble is the guard's
 * own business (fallback or fail-closed); these calls never throw and never wait longer than the
 * guard's own deadline.
 */
export interface LoginGuard {
  reserve(attempt: LoginAttempt): Promise<GuardDecision>;
  /** Resolves when every settlement begun so far is done (shutdown waits for it; so can tests). */
  settled(): Promise<void>;
  /**
   * At shutdown, once the sessions are closed: resolves when every reservation has begun to
   * settle, or when the guard's bound has passed. One wait however often it is asked for, so the
   * proxy can begin it beside its other closing work and close() finish it.
   */
  settleReservations(): Promise<void>;
  /**
   * settleReservations(), then the settlements in flight, then releases connections to the
   * store: at shutdown, after the sessions are closed.
   */
  close(): Promise<void>;
}

/** An allowed attempt with nothing to settle. */
export const NOTHING_RESERVED: GuardDecision = { kind: 'allowed', settle: () => Promise.resolve() };

/** No protection beyond the failure delay (tests of other parts). */
export const ALLOW_ALL: LoginGuard = {
  reserve: () => Promise.resolve(NOTHING_RESERVED),
  settled: () => Promise.resolve(),
  settleReservations: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
