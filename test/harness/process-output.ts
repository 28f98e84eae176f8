/**
 * What a child process has written (stdout and stderr together), awaitable: a test waits for
 * the line that reports a side effect as it arrives, instead of re-reading on a timer.
 */
import type { Readable } from 'node:stream';
import { Changes } from './changes.js';

export class ProcessOutput {
  #text = '';
  readonly #changes = new Changes();

  /** Collects from `streams` (a child's stdout and stderr). */
  attach(...streams: (Readable | null | undefined)[]): void {
    for (const stream of streams) {
      stream?.on('data', (chunk: Buffer) => {
        this.#text += chunk.toString('utf8');
        this.#changes.notify();
      });
    }
  }

  /** Everything so far. */
  get text(): string {
    return this.#text;
  }

  /** Resolves when the output after `from` characters matches `pattern`; rejects after `ms`. */
  waitFor(pattern: RegExp, from: number, ms = 10_000): Promise<RegExpExecArray> {
    return this.#changes.until(
      () => pattern.exec(this.#text.slice(from)) ?? undefined,
      ms,
      () => `no ${pattern} within ${ms} ms; output:\n${this.#text.slice(from)}`,
    );
  }
}
