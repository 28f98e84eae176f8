/**
 * A log destination for tests: every line popwarden writes, kept as text, and awaitable. A test
 * that needs a side effect with no event of its own (an audit line, a close reason) waits for
 * the line that reports it instead of sleeping.
 */
import { Writable } from 'node:stream';
import { Changes } from './changes.js';

/** A predicate over one parsed log line. */
export type LogPredicate = (entry: Record<string, unknown>) => boolean;

export interface WaitForLogOptions {
  /** Skip the lines before this index (`logs().length` before the action). Default 0. */
  readonly since?: number;
  /** Default 5 s. */
  readonly timeoutMs?: number;
}

export class LogCapture {
  readonly #lines: string[] = [];
  readonly #changes = new Changes();

  /** The stream to hand to createLogger. */
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      this.#lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      this.#changes.notify();
      callback();
    },
  });

  /** Every log line so far, as raw JSON text. */
  text(): string {
    return this.#lines.join('\n');
  }

  /** Parsed log lines. */
  entries(): Record<string, unknown>[] {
    return this.#lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /**
   * Resolves with the first line (already written or still to come, from line `since` on) that
   * `predicate` accepts; rejects after `timeoutMs` with the last lines seen.
   */
  waitFor(predicate: LogPredicate, { since = 0, timeoutMs = 5_000 }: WaitForLogOptions = {}): Promise<Record<string, unknown>> {
    let checked = since;
    const find = (): Record<string, unknown> | undefined => {
      for (; checked < this.#lines.length; checked++) {
        const entry = JSON.parse(this.#lines[checked]!) as Record<string, unknown>;
        if (predicate(entry)) return entry;
      }
      return undefined;
    };
    return this.#changes.until(find, timeoutMs, () => `no such log line within ${timeoutMs} ms; last lines:\n${this.#lines.slice(-10).join('\n')}`);
  }
}
