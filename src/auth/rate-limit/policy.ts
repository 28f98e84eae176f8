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

const LIMITER_SCOPE: Readonly<Record<LimiterKey, string>> = { userIp: 'user and address', ip: 'address', user: 'user' };

/**
 * What the limits amount to, for the startup log and --check-config: a line for each switched-off
 * limiter and for trusted_for 0s, so an off switch never looks like a limit.
 */
export function describeSwitchedOff(config: Pick<RateLimitConfig, LimiterKey | 'trustedPairMs'>): string[] {
  const notes = LIMITERS.filter((limiter) => config[limiter].maxFailures === 0).map(
    (limiter) => `rate_limit.${LIMITER_NAMES[limiter]} is off (max_failures: 0): failures are not counted per ${LIMITER_SCOPE[limiter]}`,
  );
  if (config.trustedPairMs === 0) notes.push('rate_limit.trusted_for is 0s: no address is trusted; the per-user limit applies everywhere');
  return notes;
}
