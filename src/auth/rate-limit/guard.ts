/**
 * The LoginGuard the session calls around every backend login, over a store (Redis with its
 * insurance, or memory alone). reserve() counts the attempt before the backend sees it and comes
 * out as the closed union the session renders: allowed (with the reservation to settle) |
 * limited(retryMs, limiter); a store that is down and fails closed is limited by
 * 'store_unavailable'. These calls never throw: a store error is handled by the store below.
 */
import type { RateLimitConfig } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import { NOTHING_RESERVED, type GuardDecision, type LoginAttempt, type LoginGuard, type LoginVerdict } from '../login-guard.js';
import type { CidrList } from '../../net/cidr.js';
import { passwordTag } from './hmac.js';
import { UNAVAILABLE, type Held } from './insurance.js';
import { attemptKeys, type AttemptKeys } from './keys.js';
import { LIMITER_NAMES } from './policy.js';
import type { Settlement } from './store.js';
import { SHUTDOWN_SETTLE_MS } from '../../config/limits.js';

/** What the guard needs of a store: a reservation and where to settle it, or "unavailable". */
export interface GuardStore {
  reserve(keys: AttemptKeys): Promise<Held | typeof UNAVAILABLE>;
}

export interface RateLimitGuardOptions {
  readonly config: RateLimitConfig;
  readonly store: GuardStore;
  readonly hmacKey: Buffer;
  readonly allow: CidrList;
  readonly log: Logger;
  readonly close?: () => Promise<void>;
  /** How long close() waits for reservations still unsettled. Default SHUTDOWN_SETTLE_MS. */
  readonly closeWaitMs?: number;
}

export class RateLimitGuard implements LoginGuard {
  readonly #options: RateLimitGuardOptions;
  readonly #settling = new Set<Promise<void>>();
  /** Reservations asked for or held whose settlement has not begun: places counted in the store. */
  #unsettled = 0;
  /** Told when #unsettled reaches 0 (close() waits for it). */
  #allSettling: (() => void) | undefined;
  /** The shutdown's one wait for unsettled reservations, once begun. */
  #reservationsSettled: Promise<void> | undefined;

  constructor(options: RateLimitGuardOptions) {
    this.#options = options;
  }

  async reserve(attempt: LoginAttempt): Promise<GuardDecision> {
    if (this.#options.allow.has(attempt.ip)) return NOTHING_RESERVED;
    const keys = attemptKeys(attempt.user, attempt.ip, this.#options.config);
    // Before the first await: the session wipes the password once its calls have returned. The
    // tag names the exact name the backend is given, not the canonical account: bob@d1 and bob@d2
    // share bob's counters, but on a multi-domain backend they are two accounts, and one password
    // tried on each is two guesses, not one guess repeated.
    const tag = passwordTag(this.#options.hmacKey, `${keys.pair}\0${attempt.user}`, attempt.password);
    const closeReservation = this.#openReservation();
    let held: Held | typeof UNAVAILABLE;
    try {
      held = await this.#options.store.reserve(keys);
    } catch (error) {
      closeReservation();
      // Only the memory store can get here, and it does not fail; never let a bug block logins silently.
      this.#options.log.error({ err: error }, 'rate-limit reservation failed; login allowed');
      return NOTHING_RESERVED;
    }
    if (held === UNAVAILABLE) {
      closeReservation();
      return { kind: 'limited', retryMs: 0, limiter: 'store_unavailable' };
    }
    const { reservation, settleIn } = held;
    if (reservation.kind === 'full') {
      closeReservation(); // the store gave every place back
      return { kind: 'limited', retryMs: reservation.msLeft, limiter: LIMITER_NAMES[reservation.limiter] };
    }
    let settled = false;
    return {
      kind: 'allowed',
      settle: (verdict) => {
        if (settled) return Promise.resolve();
        settled = true;
        // Tracked before the reservation closes, so close() finds it in one count or the other.
        const settlement = this.#track(this.#settle(settleIn, keys, tag, verdict));
        closeReservation();
        return settlement;
      },
    };
  }

  /** Counts a reservation as open (asked for, or held and not settling yet) until the returned function is called, once. */
  #openReservation(): () => void {
    this.#unsettled += 1;
    return () => {
      this.#unsettled -= 1;
      if (this.#unsettled === 0) this.#allSettling?.();
    };
  }

  async #settle(store: Settlement, keys: AttemptKeys, tag: string, verdict: LoginVerdict): Promise<void> {
    try {
      switch (verdict) {
        case 'accepted':
          return await store.succeed(keys);
        case 'refused':
          if (!(await store.fail(keys, tag))) this.#options.log.debug('repeated wrong password: not counted again');
          return;
        case 'unanswered':
          // No fingerprint: nobody said the password was wrong, so a repeat proves nothing.
          await store.fail(keys, undefined);
          return;
        case 'not_judged':
          return await store.release(keys);
      }
    } catch (error) {
      this.#options.log.error({ err: error, verdict }, 'could not settle a login reservation');
    }
  }

  #track(settlement: Promise<void>): Promise<void> {
    this.#settling.add(settlement);
    void settlement.finally(() => this.#settling.delete(settlement));
    return settlement;
  }

  async settled(): Promise<void> {
    await Promise.all(this.#settling);
  }

  /**
   * Every reservation is settled in the store before it closes: a failure waiting for its
   * deadline at shutdown is let go (FailureDeadline.endWaits) and settles now, and a reservation
   * still in flight is given back when its session turns out closed. A login still at its backend
   * is waited for up to closeWaitMs; past that its place stays counted until its window ends.
   */
  async close(): Promise<void> {
    await this.settleReservations();
    await this.settled();
    await this.#options.close?.();
  }

  settleReservations(): Promise<void> {
    this.#reservationsSettled ??= this.#reservationsSettling(this.#options.closeWaitMs ?? SHUTDOWN_SETTLE_MS);
    return this.#reservationsSettled;
  }

  async #reservationsSettling(boundMs: number): Promise<void> {
    if (this.#unsettled === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#allSettling = resolve;
      timer = setTimeout(resolve, boundMs);
    });
    clearTimeout(timer);
    this.#allSettling = undefined;
    if (this.#unsettled > 0) {
      this.#options.log.warn(
        { logins: this.#unsettled, waitedMs: boundMs },
        'stopping with logins still under way (at their backend): their places stay counted in the rate-limit store until their window ends',
      );
    }
  }
}
