/**
 * A rate per address over a sliding period (a minute unless told): at most `perPeriod` events
 * from one key in any period, spread or all at once. The generic cell rate algorithm (a token bucket written as one number):
 * each key keeps the time its bucket would be full again, so an event costs one Map lookup and
 * no timer. The table is bounded: entries whose bucket is full again are worth nothing and go
 * first, and past `maxKeys` the key updated longest ago is forgotten (it gets a full bucket back,
 * which only a spread over more addresses than the bound can use, and other bounds still apply).
 */

const MINUTE_MS = 60_000;

export class AddressRate {
  /** Time a bucket takes to win back one event. */
  readonly #intervalMs: number;
  /** How far ahead of now a key's full time may run: the whole period minus one event. */
  readonly #toleranceMs: number;
  readonly #maxKeys: number;
  /** When each key's bucket is full again (ms), least recently taken first. */
  readonly #fullAt = new Map<string, number>();

  constructor(perPeriod: number, maxKeys: number, periodMs = MINUTE_MS) {
    this.#intervalMs = periodMs / perPeriod;
    this.#toleranceMs = periodMs - this.#intervalMs;
    this.#maxKeys = maxKeys;
  }

  /** Takes one event for `key` at `now` (ms): false, and nothing taken, when its period is used up. */
  take(key: string, now: number): boolean {
    this.#forgetFull(now);
    const fullAt = Math.max(this.#fullAt.get(key) ?? now, now);
    if (fullAt - now > this.#toleranceMs) return false;
    // Deleted first so that the key moves to the end: the Map's order is the order of use.
    this.#fullAt.delete(key);
    if (this.#fullAt.size >= this.#maxKeys) this.#fullAt.delete(this.#fullAt.keys().next().value!);
    this.#fullAt.set(key, fullAt + this.#intervalMs);
    return true;
  }

  /** Whether `key` has room for one more event at `now`: take() without taking, and without a write. */
  hasRoom(key: string, now: number): boolean {
    const fullAt = this.#fullAt.get(key);
    return fullAt === undefined || fullAt - now <= this.#toleranceMs;
  }

  /** Drops the least recently used keys whose bucket is full again, until one is not. */
  #forgetFull(now: number): void {
    for (const [key, fullAt] of this.#fullAt) {
      if (fullAt > now) return;
      this.#fullAt.delete(key);
    }
  }

  /** Keys remembered (tests). */
  get size(): number {
    return this.#fullAt.size;
  }
}
