import type { EventEmitter } from 'node:events';

/** The deadline passed before the awaited event. */
export class DeadlineError extends Error {
  constructor(what: string, timeoutMs: number) {
    super(`no ${what} within ${timeoutMs} ms`);
    this.name = 'DeadlineError';
  }
}

/**
 * Resolves when `emitter` emits `event`; rejects with the error on 'error', with an Error when one
 * of `failOn` comes first (e.g. 'close'), and with a DeadlineError after `timeoutMs`. Every
 * listener and the timer are removed whichever way it ends: connects, handshakes and drains all
 * wait this way, and none may leak a listener per session.
 */
export function onceWithin(
  emitter: EventEmitter,
  event: string,
  timeoutMs: number,
  options: { readonly what: string; readonly failOn?: readonly string[] },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failOn = options.failOn ?? [];
    const onEvent = (): void => finish();
    const onError = (error: Error): void => finish(error);
    const onFailEvent = (): void => finish(new Error(`${options.what} interrupted: connection closed`));
    const timer = setTimeout(() => finish(new DeadlineError(options.what, timeoutMs)), timeoutMs);
    function finish(error?: Error): void {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      emitter.off('error', onError);
      for (const name of failOn) emitter.off(name, onFailEvent);
      if (error === undefined) resolve();
      else reject(error);
    }
    // on(), not once(): finish() removes every listener anyway, and once() would wrap each one
    // in a closure of its own (client drains run this per backpressure event).
    emitter.on(event, onEvent);
    emitter.on('error', onError);
    for (const name of failOn) emitter.on(name, onFailEvent);
  });
}
