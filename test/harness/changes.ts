/**
 * Waiting for state that grows by events (bytes received, log lines written), without polling:
 * the owner calls notify() on every change, and each waiter probes again only then.
 */
export class Changes {
  #waiters: (() => void)[] = [];

  /** Wakes every waiter to probe again. */
  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }

  /**
   * Resolves with the first value `probe` returns other than undefined, probing now and after
   * every notify(); rejects with what `probe` throws, or after `timeoutMs` with `timeoutMessage()`.
   */
  until<T>(probe: () => T | undefined, timeoutMs: number, timeoutMessage: () => string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== check);
        reject(new Error(timeoutMessage()));
      }, timeoutMs);
      const check = (): void => {
        let value: T | undefined;
        try {
          value = probe();
        } catch (error) {
          clearTimeout(timer);
          reject(error as Error);
          return;
        }
        if (value === undefined) {
          this.#waiters.push(check);
          return;
        }
        clearTimeout(timer);
        resolve(value);
      };
      check();
    });
  }
}
