/**
 * One log line per burst of refusals from an address, not one per connection: an address over its
 * connection rate can retry as fast as it likes, and a line for each refusal would make the log
 * the flood's amplifier (146,280 lines in 15 s in the connection-flood bench, issue 14.3). The
 * first refusal of an address for a reason is logged; while the refusals go on, at most one line
 * a window follows, with the number refused quietly since the line before. When a window ends
 * with refusals no line has told yet, the burst's tail goes to `ended`: one timer for the whole
 * table, armed for the burst logged longest ago, sweeps every burst whose window is over (the
 * Map keeps them in the order they were logged, so a sweep stops at the first still open). The
 * metric counts every refusal. The table is bounded: past `maxKeys` the key logged longest ago
 * goes (its tail told first; its next refusal is logged again). Ages are read on the monotonic
 * clock: a wall clock stepped back would hold every window open that much longer.
 */
import { ipKey } from './addresses.js';

/** What to do with one refusal: log it (with the number refused quietly since the last line), or not. */
export type RefusalNote = { readonly log: false } | { readonly log: true; readonly refusedQuietly: number };

/** The tail of a burst: refusals after its last line, told once its window is over. */
export interface EndedBurst {
  readonly reason: string;
  /** The address as the bounds count it (IPv6: its /64). */
  readonly peer: string;
  readonly refusedQuietly: number;
}

export interface RefusalBurstsOptions {
  readonly windowMs: number;
  readonly maxKeys: number;
  /** Told each burst that ends with refusals no line has told. */
  readonly ended: (burst: EndedBurst) => void;
  /** The clock, in ms. Default performance.now (monotonic). */
  readonly now?: () => number;
  /** Runs `run` in `ms`; returns its cancel. Default: an unref'd setTimeout. */
  readonly schedule?: (run: () => void, ms: number) => () => void;
}

interface Burst {
  readonly reason: string;
  readonly peer: string;
  /** When its last line was logged. */
  loggedAt: number;
  /** Refusals since then that were not logged. */
  quiet: number;
}

const QUIET: RefusalNote = { log: false };

function unrefTimeout(run: () => void, ms: number): () => void {
  const timer = setTimeout(run, ms);
  timer.unref();
  return () => clearTimeout(timer);
}

export class RefusalBursts {
  readonly #options: RefusalBurstsOptions;
  readonly #now: () => number;
  readonly #schedule: (run: () => void, ms: number) => () => void;
  /** By reason and address key, the one logged longest ago first. */
  readonly #bursts = new Map<string, Burst>();
  /** Cancels the armed sweep; undefined when none is. */
  #cancelSweep: (() => void) | undefined;

  constructor(options: RefusalBurstsOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#schedule = options.schedule ?? unrefTimeout;
  }

  /** Notes a refusal of `address` for `reason`. IPv6 addresses are grouped by their /64. */
  note(reason: string, address: string): RefusalNote {
    const now = this.#now();
    const peer = ipKey(address, 64);
    const key = `${reason} ${peer}`;
    const burst = this.#bursts.get(key);
    if (burst !== undefined && now - burst.loggedAt < this.#options.windowMs) {
      burst.quiet += 1;
      return QUIET;
    }
    // A new line: the key moves to the end of the Map, the order in which keys were logged.
    this.#bursts.delete(key);
    if (this.#bursts.size >= this.#options.maxKeys) this.#drop(this.#bursts.keys().next().value!);
    this.#bursts.set(key, { reason, peer, loggedAt: now, quiet: 0 });
    this.#armSweep(now);
    return { log: true, refusedQuietly: burst?.quiet ?? 0 };
  }

  /** Tells every burst still going, forgets them all, and stops the sweep (the listener closes). */
  close(): void {
    this.#cancelSweep?.();
    this.#cancelSweep = undefined;
    for (const key of [...this.#bursts.keys()]) this.#drop(key);
  }

  /** Forgets the bursts whose window is over, telling their tails, and arms the sweep for the next. */
  #sweep(): void {
    this.#cancelSweep = undefined;
    const now = this.#now();
    for (const [key, burst] of this.#bursts) {
      if (now - burst.loggedAt < this.#options.windowMs) break;
      this.#drop(key);
    }
    this.#armSweep(now);
  }

  /** One timer for the table: due when the burst logged longest ago ends its window. */
  #armSweep(now: number): void {
    if (this.#cancelSweep !== undefined) return;
    const oldest = this.#bursts.values().next().value;
    if (oldest === undefined) return;
    this.#cancelSweep = this.#schedule(() => this.#sweep(), Math.max(0, oldest.loggedAt + this.#options.windowMs - now));
  }

  #drop(key: string): void {
    const burst = this.#bursts.get(key);
    this.#bursts.delete(key);
    if (burst !== undefined && burst.quiet > 0) this.#options.ended({ reason: burst.reason, peer: burst.peer, refusedQuietly: burst.quiet });
  }
}
