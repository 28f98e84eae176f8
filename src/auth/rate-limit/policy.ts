/**
 * The decision from what the store says about an attempt. Pure: the numbers come from
 * `rate_limit:` and the counters from the store (Redis or memory), so it is unit-tested alone.
 */
import type { LimiterPolicy, RateLimitConfig } from '../../config/types.js';
import type { GuardDecision } from '../login-guard.js';
import type { LimiterName } from '../../observability/metrics.js';

/** One failure counter as read from the store: how many failures, and how long until it expires. */
export interface Counter {
  readonly consumed: number;
  readonly msLeft: number;
}

/** Everything check() needs about one attempt, read in one round trip. */
export interface Snapshot {
  readonly userIp: Counter | undefined;
  readonly ip: Counter | undefined;
  readonly user: Counter | undefined;
  /** This user logged in successfully from this address within `trusted_for`. */
  readonly trusted: boolean;
}

/** The three limiters in the order they are reported: the narrowest first. */
export const LIMITERS = ['userIp', 'ip', 'user'] as const;
export type LimiterKey = (typeof LIMITERS)[number];

export const LIMITER_NAMES: Readonly<Record<LimiterKey, LimiterName>> = { userIp: 'user_ip', ip: 'ip', user: 'user' };

/**
 * A counter blocks once it holds `maxFailures`: the store keeps it at that value for `block`
 * (rate-limiter-flexible's block on crossing `points = maxFailures - 1`), so "10 failures block"
 * means the 11th attempt is refused.
 */
export function isBlocked(counter: Counter | undefined, policy: LimiterPolicy): boolean {
  return counter !== undefined && counter.consumed >= policy.maxFailures && counter.msLeft !== 0;
}

/** allowed, or limited by the first limiter that blocks. The per-user one never binds a trusted pair. */
export function decide(snapshot: Snapshot, config: Pick<RateLimitConfig, LimiterKey>): GuardDecision {
  for (const limiter of LIMITERS) {
    if (limiter === 'user' && snapshot.trusted) continue;
    const counter = snapshot[limiter];
    if (isBlocked(counter, config[limiter])) {
      return { kind: 'limited', retryMs: Math.max(counter?.msLeft ?? 0, 0), limiter: LIMITER_NAMES[limiter] };
    }
  }
  return { kind: 'allowed' };
}
