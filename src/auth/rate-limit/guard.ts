/**
 * The LoginGuard the session calls around every backend login, over a store (Redis with its
 * insurance, or memory alone). Decisions come out as the closed union the session renders:
 * allowed | limited(retryMs, limiter); a store that is down and fails closed is limited by
 * 'store_unavailable'. These calls never throw: a store error is handled by the store below.
 */
import type { RateLimitConfig } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import type { GuardDecision, LoginAttempt, LoginGuard } from '../login-guard.js';
import type { CidrList } from './cidr.js';
import { passwordTag } from './hmac.js';
import { UNAVAILABLE } from './insurance.js';
import { attemptKeys } from './keys.js';
import { decide, type Snapshot } from './policy.js';
import type { AttemptKeys } from './keys.js';

/** What the guard needs of a store: the LimitStore calls, where a read may be "unavailable". */
export interface GuardStore {
  read(keys: AttemptKeys): Promise<Snapshot | typeof UNAVAILABLE>;
  fail(keys: AttemptKeys, tag: string): Promise<boolean>;
  succeed(keys: AttemptKeys): Promise<void>;
}

export interface RateLimitGuardOptions {
  readonly config: RateLimitConfig;
  readonly store: GuardStore;
  readonly hmacKey: Buffer;
  readonly allow: CidrList;
  readonly log: Logger;
  readonly close?: () => Promise<void>;
}

export class RateLimitGuard implements LoginGuard {
  readonly #options: RateLimitGuardOptions;

  constructor(options: RateLimitGuardOptions) {
    this.#options = options;
  }

  #keys(attempt: LoginAttempt): AttemptKeys {
    return attemptKeys(attempt.user, attempt.ip, this.#options.config);
  }

  async check(attempt: LoginAttempt): Promise<GuardDecision> {
    if (this.#options.allow.has(attempt.ip)) return { kind: 'allowed' };
    try {
      const snapshot = await this.#options.store.read(this.#keys(attempt));
      if (snapshot === UNAVAILABLE) return { kind: 'limited', retryMs: 0, limiter: 'store_unavailable' };
      return decide(snapshot, this.#options.config);
    } catch (error) {
      // Only the memory store can get here, and it does not fail; never let a bug block logins silently.
      this.#options.log.error({ err: error }, 'rate-limit check failed; login allowed');
      return { kind: 'allowed' };
    }
  }

  async recordFailure(attempt: LoginAttempt): Promise<void> {
    if (this.#options.allow.has(attempt.ip)) return;
    const keys = this.#keys(attempt);
    // Before the first await: the session wipes the password right after this call returns.
    const tag = passwordTag(this.#options.hmacKey, keys.pair, attempt.password);
    try {
      const counted = await this.#options.store.fail(keys, tag);
      if (!counted) this.#options.log.debug('repeated wrong password: not counted again');
    } catch (error) {
      this.#options.log.error({ err: error }, 'could not count a failed login');
    }
  }

  async recordSuccess(attempt: LoginAttempt): Promise<void> {
    if (this.#options.allow.has(attempt.ip)) return;
    try {
      await this.#options.store.succeed(this.#keys(attempt));
    } catch (error) {
      this.#options.log.error({ err: error }, 'could not record a successful login');
    }
  }

  close(): Promise<void> {
    return this.#options.close?.() ?? Promise.resolve();
  }
}
