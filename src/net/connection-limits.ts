/**
 * The ConnectionGate popwarden runs with: the deny list, concurrent sessions per address, new
 * connections per address per second and per minute, sessions per address ended by a protocol
 * error per hour, and concurrent sessions in the whole process, decided
 * synchronously at TCP accept before any TLS work (STYLE lesson 7, X-02, X-03). Addresses are
 * counted as the rate limiter keys them (IPv6 by its /64), so a client cannot dodge the bound by
 * rotating addresses inside its own network. The process bound keeps its last share for
 * returning clients (returning-clients.ts: KeptShare, counted per account).
 */
import type { Admission, ConnectionGate } from './connection-gate.js';
import type { CidrList } from './cidr.js';
import { ipKey } from './addresses.js';
import { KeptShare } from './returning-clients.js';
import { AddressRate } from './address-rate.js';
import { MAX_RATE_TRACKED_ADDRESSES, RETURNING_PROTOCOL_ERRORS_FACTOR } from '../config/limits.js';

export interface ConnectionLimitsOptions {
  /** Concurrent sessions per address; 0 = no bound. */
  readonly maxSessionsPerIp: number;
  /** New connections per address per second; 0 = no bound. */
  readonly maxNewConnectionsPerIp: number;
  /**
   * New connections per address in any minute: the sustained rate under the per-second burst,
   * what bounds a flood that keeps going (each connection may cost a TLS handshake). 0 or
   * absent = no bound.
   */
  readonly maxNewConnectionsPerIpPerMinute?: number;
  /**
   * Sessions from one address that may end in a protocol error (session/close-reasons.ts, PROTOCOL_ERRORS) in any
   * hour; past it the address is refused at accept until the hour has room again, so a client
   * that only sends what no POP3 client sends (64 KiB SASL lines, other protocols) costs no TLS
   * handshake more. Returning clients are never refused by it. 0 or absent = no bound.
   */
  readonly maxProtocolErrorsPerIpPerHour?: number;
  /**
   * Sessions open at once from all addresses, allow-listed ones included (the file descriptors they
   * hold are the process's either way); 0 or absent = no bound.
   */
  readonly maxSessions?: number;
  readonly ipv6PrefixLength: number;
  readonly allow: CidrList;
  readonly deny: CidrList;
  /**
   * For tests: the clock, in ms. Default performance.now: monotonic, so a wall clock stepped
   * back (NTP at boot, a VM resumed) does not push every address's second and minute that far
   * into the future, refusing it all that while.
   */
  readonly now?: () => number;
}

const WINDOW_MS = 1_000;
const HOUR_MS = 60 * 60 * 1_000;

export class ConnectionLimits implements ConnectionGate {
  readonly #options: ConnectionLimitsOptions;
  readonly #now: () => number;
  /** Open sessions per address key. */
  readonly #open = new Map<string, number>();
  /** Connections in the current one-second window per address key (fixed window: cheap, no timers). */
  #window = new Map<string, number>();
  #windowStart = 0;
  /** Open sessions from every address. */
  #total = 0;
  readonly #perMinute: AddressRate | undefined;
  readonly #kept: KeptShare;
  /** Protocol errors per address: a stranger's bound, and the larger one of a returning client. */
  readonly #protocolErrors: { readonly stranger: AddressRate; readonly returning: AddressRate } | undefined;

  constructor(options: ConnectionLimitsOptions) {
    this.#options = options;
    this.#kept = new KeptShare(options.maxSessions ?? 0);
    this.#now = options.now ?? (() => performance.now());
    const perMinute = options.maxNewConnectionsPerIpPerMinute ?? 0;
    this.#perMinute = perMinute > 0 ? new AddressRate(perMinute, MAX_RATE_TRACKED_ADDRESSES) : undefined;
    const protocolErrors = options.maxProtocolErrorsPerIpPerHour ?? 0;
    this.#protocolErrors =
      protocolErrors > 0
        ? {
            stranger: new AddressRate(protocolErrors, MAX_RATE_TRACKED_ADDRESSES, HOUR_MS),
            returning: new AddressRate(protocolErrors * RETURNING_PROTOCOL_ERRORS_FACTOR, MAX_RATE_TRACKED_ADDRESSES, HOUR_MS),
          }
        : undefined;
  }

  /**
   * A session from `ip` ended in a protocol error: one of its hour's. Counted for every address;
   * admit() spares allow-listed and returning ones.
   */
  protocolError(ip: string): void {
    const errors = this.#protocolErrors;
    if (errors === undefined) return;
    const key = ipKey(ip, this.#options.ipv6PrefixLength);
    const now = this.#now();
    errors.stranger.take(key, now);
    errors.returning.take(key, now);
  }

  admit(ip: string, makeRoom?: () => boolean, returning?: string): Admission {
    const { allow, deny } = this.#options;
    if (deny.has(ip)) return { kind: 'refused', reason: 'denied' };
    const perIp = allow.has(ip) ? undefined : this.#admitPerIp(ip, returning !== undefined);
    if (typeof perIp === 'object') return perIp;
    const kept = this.#kept.take(this.#total, returning, () => makeRoom?.() === true);
    if (kept === undefined) {
      if (perIp !== undefined) this.#releasePerIp(perIp);
      return { kind: 'refused', reason: 'max_sessions' };
    }
    this.#total += 1;
    // One closure for both counts: every session holds its admission until it closes (issue 10.4).
    let released = false;
    return {
      kind: 'admitted',
      release: () => {
        if (released) return;
        released = true;
        this.#total -= 1;
        kept();
        if (perIp !== undefined) this.#releasePerIp(perIp);
      },
    };
  }

  /**
   * The per-address bounds: the refusal, or the address's key, whose count now holds a place
   * for it until #releasePerIp.
   * A returning client (a login succeeded from it lately) is spared the per-minute rate: it is what
   * an office or carrier NAT, many users behind one address, would meet first; the burst per
   * second and the open sessions per address still bound it. Its protocol errors have a bound
   * RETURNING_PROTOCOL_ERRORS_FACTOR times a stranger's: one broken client behind that NAT must
   * not lock out every user of it, and one login must not buy an address an unbounded flood.
   */
  #admitPerIp(ip: string, returning: boolean): Extract<Admission, { kind: 'refused' }> | string {
    const { maxSessionsPerIp, maxNewConnectionsPerIp, ipv6PrefixLength } = this.#options;
    const key = ipKey(ip, ipv6PrefixLength);

    const now = this.#now();
    // First: an address that has used up its protocol errors is refused before it counts for anything else.
    const errors = this.#protocolErrors?.[returning ? 'returning' : 'stranger'];
    if (errors?.hasRoom(key, now) === false) return { kind: 'refused', reason: 'too_many_protocol_errors' };
    if (now - this.#windowStart >= WINDOW_MS) {
      // A new window: the old map is dropped whole, so idle addresses cost nothing.
      this.#window = new Map();
      this.#windowStart = now;
    }
    const recent = (this.#window.get(key) ?? 0) + 1;
    this.#window.set(key, recent);
    if (maxNewConnectionsPerIp > 0 && recent > maxNewConnectionsPerIp) return { kind: 'refused', reason: 'too_many_connections' };

    const open = this.#open.get(key) ?? 0;
    if (maxSessionsPerIp > 0 && open >= maxSessionsPerIp) return { kind: 'refused', reason: 'too_many_sessions' };
    // Last of the per-address bounds: only a connection every other bound admits uses up its minute.
    if (!returning && this.#perMinute?.take(key, now) === false) return { kind: 'refused', reason: 'too_many_connections_per_minute' };
    this.#open.set(key, open + 1);
    return key;
  }

  #releasePerIp(key: string): void {
    const left = (this.#open.get(key) ?? 1) - 1;
    if (left <= 0) this.#open.delete(key);
    else this.#open.set(key, left);
  }

  /** Open sessions from an address's key, or from all addresses (for tests and diagnostics). */
  openSessions(ip?: string): number {
    return ip === undefined ? this.#total : (this.#open.get(ipKey(ip, this.#options.ipv6PrefixLength)) ?? 0);
  }
}
