/**
 * The three limiters and what they are called outside. Which ones count is the configuration's
 * business: a limiter with max_failures 0 is off (issue 9.5).
 */
import type { RateLimitConfig } from '../../config/types.js';
import type { LimiterName } from '../../observability/metrics.js';

/** The three limiters in the order they are reported: the narrowest first. */
export const LIMITERS = ['userIp', 'ip', 'user'] as const;
export type LimiterKey = (typeof LIMITERS)[number];

export const LIMITER_NAMES: Readonly<Record<LimiterKey, LimiterName>> = { userIp: 'user_ip', ip: 'ip', user: 'user' };

/** The limiters that count, narrowest first: those whose max_failures is not 0. */
export function activeLimiters(config: Pick<RateLimitConfig, LimiterKey>): readonly LimiterKey[] {
  return LIMITERS.filter((limiter) => config[limiter].maxFailures > 0);
}
