/**
 * What the tests of one describe() block share (a real server, a tap, popwarden in front, a Redis
 * client), started once before them and stopped once after them. Each e2e file used to spell out
 * the same `let`s, before() and after() with its `?.stop()` chain; here it is said once, and a
 * set-up that fails halfway still stops what it had started, newest first.
 */
import { after, before } from 'node:test';

/** Anything with a stop(): a server, a tap, a TestProxy, a Protected. */
export interface Stoppable {
  stop(): unknown;
}

/**
 * Registers what `keep` is given to be stopped after the suite: with a stop() of its own, or with
 * `stop` (a client's disconnect, a directory's removal). Returns the value, for chaining.
 */
export interface Keep {
  <T extends Stoppable>(value: T): T;
  <T>(value: T, stop: (value: T) => unknown): T;
}

/**
 * Runs `setUp` in the enclosing describe()'s before() and returns a function that gives its
 * result to the tests; everything `setUp` passed to `keep` is stopped in after(), newest first.
 * Call it in the describe() body, before the tests.
 */
export function sharedBySuite<T>(setUp: (keep: Keep) => Promise<T>): () => T {
  const stops: (() => unknown)[] = [];
  const keep = (<V>(value: V, stop?: (value: V) => unknown): V => {
    stops.push(stop === undefined ? () => (value as Stoppable).stop() : () => stop(value));
    return value;
  }) as Keep;
  let made: { readonly value: T } | undefined;
  before(async () => {
    made = { value: await setUp(keep) };
  });
  after(async () => {
    // Every one is stopped even if another fails to stop; the first failure is the hook's.
    const failures: unknown[] = [];
    for (const stop of stops.reverse()) await Promise.resolve().then(stop).catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw failures[0];
  });
  return () => {
    if (made === undefined) throw new Error('the suite was not set up (its before() failed or has not run)');
    return made.value;
  };
}
