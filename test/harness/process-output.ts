/**
 * What a child process has written (stdout and stderr together), awaitable: a test waits for
 * the line that reports a side effect as it arrives, instead of re-reading on a timer.
 */
import type { Readable } from 'node:stream';

export class ProcessOutput {
  #text = '';
  #waiters: (() => void)[] = [];

  /** Collects from `streams` (a child's stdout and stderr). */
  attach(...streams: (Readable | null | undefined)[]): void {
    for (const stream of streams) {
      stream?.on('data', (chunk: Buffer) => {
        this.#text += chunk.toString('utf8');
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const waiter of waiters) waiter();
      });
    }
  }

  /** Everything so far. */
  get text(): string {
    return this.#text;
  }

  /** Resolves when the output after `from` characters matches `pattern`; rejects after `ms`. */
  waitFor(pattern: RegExp, from: number, ms = 10_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== check);
        reject(new Error(`no ${pattern} within ${ms} ms; output:\n${this.#text.slice(from)}`));
      }, ms);
      const check = (): void => {
        const match = pattern.exec(this.#text.slice(from));
        if (match === null) {
          this.#waiters.push(check);
          return;
        }
        clearTimeout(timer);
        resolve(match);
      };
      check();
    });
  }
}
