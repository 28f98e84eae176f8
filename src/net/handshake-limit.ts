/**
 * Bounds on the TLS handshakes in progress, on the implicit-TLS port and after STLS together: a
 * handshake costs a private-key operation, so a flood could otherwise starve the event loop
 * . Two bounds: per client address, counted as the rate limiter keys addresses (IPv6 by its
 * network, rate_limit.ipv6_prefix), so rotating through one's own /64 does not multiply the bound;
 * and for the whole process, so many addresses together cannot either. A connection over either
 * bound is closed before any TLS work. One Map entry per address with a handshake in flight;
 * nothing is kept afterwards.
 */
import { ipKey } from './addresses.js';

export interface HandshakeBounds {
  /** Handshakes in progress per address (IPv6: per network); 0 = no bound. */
  readonly maxPerIp: number;
  /** Handshakes in progress in the process; 0 = no bound. */
  readonly maxTotal: number;
  /** IPv6 clients are counted by this prefix length (rate_limit.ipv6_prefix). */
  readonly ipv6PrefixLength: number;
}

/** Which bound refused a handshake: the per-address one or the process-wide one (metric labels). */
export type HandshakeRefusal = 'too_many_handshakes' | 'max_handshakes';

export type HandshakeAdmission =
  | { readonly kind: 'started'; readonly release: () => void }
  | { readonly kind: 'refused'; readonly reason: HandshakeRefusal };

export class HandshakeLimiter {
  readonly #bounds: HandshakeBounds;
  readonly #inProgress = new Map<string, number>();
  #total = 0;

  constructor(bounds: HandshakeBounds) {
    this.#bounds = bounds;
  }

  /** Starts a handshake for `address`, or says which bound refuses it. `release` is idempotent. */
  admit(address: string): HandshakeAdmission {
    const { maxPerIp, maxTotal, ipv6PrefixLength } = this.#bounds;
    if (maxPerIp === 0 && maxTotal === 0) return { kind: 'started', release: () => undefined };
    const key = ipKey(address, ipv6PrefixLength);
    const count = this.#inProgress.get(key) ?? 0;
    if (maxPerIp > 0 && count >= maxPerIp) return { kind: 'refused', reason: 'too_many_handshakes' };
    if (maxTotal > 0 && this.#total >= maxTotal) return { kind: 'refused', reason: 'max_handshakes' };
    this.#inProgress.set(key, count + 1);
    this.#total += 1;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#total -= 1;
      const left = (this.#inProgress.get(key) ?? 1) - 1;
      if (left <= 0) this.#inProgress.delete(key);
      else this.#inProgress.set(key, left);
    };
    return { kind: 'started', release };
  }

  /** admit() for callers that only need to know whether: a release function, or undefined when refused. */
  begin(address: string): (() => void) | undefined {
    const admission = this.admit(address);
    return admission.kind === 'started' ? admission.release : undefined;
  }

  /** Handshakes in progress from `address`'s key, or in total (tests, debugging). */
  inProgress(address?: string): number {
    return address === undefined ? this.#total : (this.#inProgress.get(ipKey(address, this.#bounds.ipv6PrefixLength)) ?? 0);
  }
}

/** No bound at all (tests and embedders that do not configure one). */
export const UNLIMITED_HANDSHAKES = new HandshakeLimiter({ maxPerIp: 0, maxTotal: 0, ipv6PrefixLength: 64 });
