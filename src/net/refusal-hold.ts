/**
 * Connections refused at accept for an address's rate, held open for a while before they are
 * closed, as a tarpit: a client that reconnects the moment it is closed (a flood with a fixed
 * number of connections in flight) then makes one attempt per hold, not one per round trip. Under
 * the oversized-SASL attack of issue 14.3, 50 connections in flight made 2,000 attempts a second,
 * each an accept, a socket and a close for popwarden (about 70 µs of CPU), and a TLS client set-up
 * for the attacker. A held connection is not read (the listener accepts paused) and costs a
 * descriptor and a Map entry until it goes; past `max` held, a refusal closes at once, as it did
 * before, so the hold is bounded whatever the flood. One timer for all of them: they are held for
 * the same time, so the Map's insertion order is the order in which they go.
 */
import type { Socket } from 'node:net';

/** When a held connection goes: for tests, a clock and a timer that can be driven by hand. */
export interface HoldClock {
  now(): number;
  schedule(ms: number, run: () => void): { cancel(): void };
}

const REAL_CLOCK: HoldClock = {
  now: () => performance.now(),
  schedule(ms, run) {
    const timer = setTimeout(run, ms);
    // A pending refusal must not keep a stopping process alive.
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

export class RefusalHold {
  readonly #holdMs: number;
  readonly #max: number;
  readonly #clock: HoldClock;
  /** Each held socket's refusal to carry out, and when; held longest first. */
  readonly #held = new Map<Socket, { readonly at: number; readonly refuse: () => void }>();
  #timer: { cancel(): void } | undefined;

  constructor(holdMs: number, max: number, clock: HoldClock = REAL_CLOCK) {
    this.#holdMs = holdMs;
    this.#max = max;
    this.#clock = clock;
  }

  /** Carries out `refuse` (the close) on `socket` after the hold, or now if the hold is full or off. */
  hold(socket: Socket, refuse: () => void): void {
    if (this.#holdMs <= 0 || this.#held.size >= this.#max) return refuse();
    this.#held.set(socket, { at: this.#clock.now() + this.#holdMs, refuse });
    this.#timer ??= this.#clock.schedule(this.#holdMs, this.#due);
  }

  /** Every held connection refused now (shutdown). */
  releaseAll(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    const all = [...this.#held.values()];
    this.#held.clear();
    for (const entry of all) entry.refuse();
  }

  /** Connections held now. */
  get size(): number {
    return this.#held.size;
  }

  readonly #due = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    for (const [socket, entry] of this.#held) {
      if (entry.at > now) {
        this.#timer = this.#clock.schedule(entry.at - now, this.#due);
        return;
      }
      this.#held.delete(socket);
      entry.refuse();
    }
  };
}
