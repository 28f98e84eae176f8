/**
 * One log line per burst of refusals from an address, not one per connection: an address over its
 * connection rate can retry as fast as it likes, and a line for each refusal would make the log
 * the flood's amplifier (146,280 lines in 15 s in the connection-flood bench, issue 14.3). The
 * first refusal of an address for a reason is logged; while the refusals go on, at most one line
 * a window follows, with the number refused quietly since the line before. The metric counts
 * every refusal. The table is bounded: bursts that have ended are forgotten whenever a line is
 * logged, and past `maxKeys` the key logged longest ago goes too (its next refusal is logged
 * again).
 */
import { ipKey } from './addresses.js';

/** What to do with one refusal: log it (with the number refused quietly since the last line), or not. */
export type RefusalNote = { readonly log: false } | { readonly log: true; readonly refusedQuietly: number };

interface Burst {
  /** When its last line was logged. */
  loggedAt: number;
  /** Refusals since then that were not logged. */
  quiet: number;
}

const QUIET: RefusalNote = { log: false };

export class RefusalBursts {
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** By reason and address key, the one logged longest ago first. */
  readonly #bursts = new Map<string, Burst>();

  constructor(windowMs: number, maxKeys: number, now: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  /** Notes a refusal of `address` for `reason`. IPv6 addresses are grouped by their /64. */
  note(reason: string, address: string): RefusalNote {
    const now = this.#now();
    const key = `${reason} ${ipKey(address, 64)}`;
    const burst = this.#bursts.get(key);
    if (burst !== undefined && now - burst.loggedAt < this.#windowMs) {
      burst.quiet += 1;
      return QUIET;
    }
    // A new line: the key moves to the end of the Map, the order in which keys were logged.
    this.#bursts.delete(key);
    this.#forgetEnded(now);
    if (this.#bursts.size >= this.#maxKeys) this.#bursts.delete(this.#bursts.keys().next().value!);
    this.#bursts.set(key, { loggedAt: now, quiet: 0 });
    return { log: true, refusedQuietly: burst?.quiet ?? 0 };
  }

  /**
   * Drops the keys logged longest ago whose burst has ended: window over and nothing refused
   * since, or a whole window more without a refusal to carry the count (that count is then in
   * the metric only). An address that comes back later is logged afresh.
   */
  #forgetEnded(now: number): void {
    for (const [key, burst] of this.#bursts) {
      const age = now - burst.loggedAt;
      if (age < this.#windowMs || (burst.quiet > 0 && age < 2 * this.#windowMs)) return;
      this.#bursts.delete(key);
    }
  }
}
