/**
 * At most N TLS handshakes in progress per client address, on the implicit-TLS port and after
 * STLS together: a handshake costs a private-key operation, so a flood from one host could
 * otherwise starve the event loop. A connection over the bound is closed before any TLS
 * work. One Map entry per address with a handshake in flight; nothing is kept afterwards.
 */
export class HandshakeLimiter {
  readonly #inProgress = new Map<string, number>();

  /** `max` 0 means no bound. */
  constructor(readonly max: number) {}

  /** Starts a handshake for `address`: a release function (idempotent), or undefined when the bound is reached. */
  begin(address: string): (() => void) | undefined {
    if (this.max === 0) return () => undefined;
    const count = this.#inProgress.get(address) ?? 0;
    if (count >= this.max) return undefined;
    this.#inProgress.set(address, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#inProgress.get(address) ?? 1) - 1;
      if (left <= 0) this.#inProgress.delete(address);
      else this.#inProgress.set(address, left);
    };
  }

  /** Handshakes in progress from `address` (tests, debugging). */
  inProgress(address: string): number {
    return this.#inProgress.get(address) ?? 0;
  }
}

/** No bound at all (tests and embedders that do not configure one). */
export const UNLIMITED_HANDSHAKES = new HandshakeLimiter(0);
