/**
 * The choice both process-wide bounds make when they are full (limits.max_handshakes,
 * limits.max_sessions): the oldest connection that has not got anywhere yet, if it is old enough,
 * makes room for the new one (Dovecot's client_destroy_oldest). Refusing the newest instead lets
 * a slowloris from enough addresses hold the bound for a whole timeout, the owner locked out with
 * everyone else (issue 14.3). The per-address bounds still refuse the newest: there it only hurts
 * the address that filled its own share.
 */
import { EVICTION_MIN_AGE_MS } from '../config/limits.js';

/** One connection the bound counts: when it started, by the clock the bound reads. */
export interface Aged {
  readonly startedAt: number;
}

/**
 * The oldest of `oldestFirst` (in the order they started) that `qualifies` and is at least
 * EVICTION_MIN_AGE_MS old, or undefined: then the newest is refused. The walk stops at the first
 * one under the floor, since every later one is younger still, so a full bound of fresh
 * connections costs a step, and one of old connections that do not qualify (logged in) at most
 * one step each.
 */
export function oldestEvictable<T extends Aged>(oldestFirst: Iterable<T>, now: number, qualifies: (entry: T) => boolean): T | undefined {
  for (const entry of oldestFirst) {
    if (now - entry.startedAt < EVICTION_MIN_AGE_MS) return undefined;
    if (qualifies(entry)) return entry;
  }
  return undefined;
}
