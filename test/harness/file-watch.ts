/**
 * Waiting on a file another process writes (a server's log), by its change events instead of
 * polling: `probe` runs now and again after every change, until it returns a value.
 */
import fs from 'node:fs';

/**
 * Resolves with the first value `probe` returns other than undefined, probing now and on every
 * change of `file`; resolves undefined after `timeoutMs`, so the caller's assertion says what
 * was missing.
 */
export function whenFileShows<T>(file: string, probe: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const now = probe();
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve) => {
    const finish = (value: T | undefined): void => {
      clearTimeout(timer);
      watcher.close();
      resolve(value);
    };
    const watcher = fs.watch(file, () => {
      const value = probe();
      if (value !== undefined) finish(value);
    });
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    // A change between the first probe and the watch: look once more now that it is in place.
    const value = probe();
    if (value !== undefined) finish(value);
  });
}
