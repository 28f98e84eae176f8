/**
 * Bounds on the TLS handshakes in progress, on the implicit-TLS port and after STLS together: a
 * handshake costs a private-key operation, so a flood could otherwise starve the event loop
 * . Two bounds: per client address, counted as the rate limiter keys addresses (IPv6 by its
 * network, rate_limit.ipv6_prefix), so rotating through one's own /64 does not multiply the bound;
 * and for the whole process, so many addresses together cannot either. A connection over the
 * per-address bound is closed before any TLS work. When the process bound is full, the oldest
 * evictable handshake past the age floor is closed to make room (evict-oldest.ts), else the new
 * connection is; its last share is kept for returning clients (returning-clients.ts: KeptShare,
 * counted per account), so a bound filled by strangers faster than the floor lets any go still
 * takes the owner. One Map entry per address and one per handshake in flight; nothing is kept
 * afterwards.
 */
import { ipKey } from './addresses.js';
import { oldestEvictable, type Aged } from './evict-oldest.js';
import { KeptShare } from './returning-clients.js';

export interface HandshakeBounds {
  /** Handshakes in progress per address (IPv6: per network); 0 = no bound. */
  readonly maxPerIp: number;
  /** Handshakes in progress in the process; 0 = no bound. */
  readonly maxTotal: number;
  /** IPv6 clients are counted by this prefix length (rate_limit.ipv6_prefix). */
  readonly ipv6PrefixLength: number;
  /** The clock handshake ages are read from, in ms (tests move it). Default: performance.now. */
  readonly now?: () => number;
  /**
   * The account an address is a returning client of (ReturningClients.accountOf), for whom the
   * last share of maxTotal is kept; undefined for a stranger. Default: everyone is a stranger.
   */
  readonly returning?: (address: string) => string | undefined;
}

/** A handshake in progress, in the order they started. */
interface InFlight extends Aged {
  readonly release: () => void;
  /** Closes its connection; absent for one that may not be evicted. */
  readonly evict: (() => void) | undefined;
}

/** Which bound refused a handshake: the per-address one or the process-wide one (metric labels). */
export type HandshakeRefusal = 'too_many_handshakes' | 'max_handshakes';

export type HandshakeAdmission =
  | { readonly kind: 'started'; readonly release: () => void }
  | { readonly kind: 'refused'; readonly reason: HandshakeRefusal };

export class HandshakeLimiter {
  readonly #bounds: HandshakeBounds;
  readonly #inProgress = new Map<string, number>();
  /** Every handshake in progress, oldest first (a Set keeps insertion order). */
  readonly #inFlight = new Set<InFlight>();
  readonly #now: () => number;
  readonly #kept: KeptShare;

  constructor(bounds: HandshakeBounds) {
    this.#bounds = bounds;
    this.#now = bounds.now ?? (() => performance.now());
    this.#kept = new KeptShare(bounds.maxTotal);
  }

  /**
   * Starts a handshake for `address`, or says which bound refuses it. `release` is idempotent.
   * With `evict`, this handshake may itself be closed later to make room (evict must close its
   * connection; its place is released here first).
   */
  admit(address: string, evict?: () => void): HandshakeAdmission {
    const { maxPerIp, maxTotal, ipv6PrefixLength } = this.#bounds;
    if (maxPerIp === 0 && maxTotal === 0) return { kind: 'started', release: () => undefined };
    const key = ipKey(address, ipv6PrefixLength);
    if (maxPerIp > 0 && (this.#inProgress.get(key) ?? 0) >= maxPerIp) return { kind: 'refused', reason: 'too_many_handshakes' };
    const kept = this.#kept.take(this.#inFlight.size, this.#bounds.returning?.(address), () => this.evictOldest());
    if (kept === undefined) return { kind: 'refused', reason: 'max_handshakes' };
    return { kind: 'started', release: this.#start(key, evict, kept) };
  }

  /**
   * Closes the oldest evictable handshake past the age floor; false when there is none. Also
   * limits.max_sessions' last resort: a handshake holds a place there too without being a session.
   */
  evictOldest(): boolean {
    const victim = oldestEvictable(this.#inFlight, this.#now(), (entry) => entry.evict !== undefined);
    if (victim === undefined) return false;
    victim.release();
    victim.evict?.();
    return true;
  }

  /** Counts a handshake in; the function returned counts it out, once. */
  #start(key: string, evict: (() => void) | undefined, kept: () => void): () => void {
    this.#inProgress.set(key, (this.#inProgress.get(key) ?? 0) + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      kept();
      this.#inFlight.delete(entry);
      const left = (this.#inProgress.get(key) ?? 1) - 1;
      if (left <= 0) this.#inProgress.delete(key);
      else this.#inProgress.set(key, left);
    };
    const entry: InFlight = { startedAt: this.#now(), release, evict };
    this.#inFlight.add(entry);
    return release;
  }

  /** admit() for callers that only need to know whether: a release function, or undefined when refused. */
  begin(address: string, evict?: () => void): (() => void) | undefined {
    const admission = this.admit(address, evict);
    return admission.kind === 'started' ? admission.release : undefined;
  }

  /** Handshakes in progress from `address`'s key, or in total (tests, debugging). */
  inProgress(address?: string): number {
    return address === undefined ? this.#inFlight.size : (this.#inProgress.get(ipKey(address, this.#bounds.ipv6PrefixLength)) ?? 0);
  }
}

/** No bound at all (tests and embedders that do not configure one). */
export const UNLIMITED_HANDSHAKES = new HandshakeLimiter({ maxPerIp: 0, maxTotal: 0, ipv6PrefixLength: 64 });
