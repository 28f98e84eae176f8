/**
 * A rate per address over a sliding minute: at most `perMinute` events from one key in any 60 s,
 * spread or all at once. The generic cell rate algorithm (a token bucket written as one number):
 * each key keeps the time its bucket would be full again, so an event costs one Map lookup and
 * no timer. The table is bounded: entries whose bucket is full again are worth nothing and go
 * first, and past `maxKeys` the key updated longest ago is forgotten (it gets a full bucket back,
 * which only a spread over more addresses than the bound can use, and other bounds still apply).
 */

const MINUTE_MS = 60_000;

export class AddressRate {
  /** Time a bucket takes to win back one event. */
  readonly #intervalMs: number;
  /** How far ahead of now a key's full time may run: the whole minute minus one event. */
  readonly #toleranceMs: number;
  readonly #maxKeys: number;
  /** When each key's bucket is full again (ms), least recently taken first. */
  readonly #fullAt = new Map<string, number>();

  constructor(perMinute: number, maxKeys: number) {
    this.#intervalMs = MINUTE_MS / perMinute;
    this.#toleranceMs = MINUTE_MS - this.#intervalMs;
    this.#maxKeys = maxKeys;
  }

  /** Takes one event for `key` at `now` (ms): false, and nothing taken, when its minute is used up. */
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
