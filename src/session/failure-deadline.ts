import type { Logger } from '../observability/log.js';

/** How long a slow refusal keeps every failure at its grid point. */
const HIGH_WATER_WINDOW_MS = 15 * 60_000;
/** The high-water mark is kept per minute, so the memory is at most this many numbers. */
const BUCKET_MS = 60_000;
/** At most one "the backend is slower than the delay" warning per this interval. */
const WARNING_INTERVAL_MS = 10 * 60_000;
/**
 * Each failure is answered up to this fraction of a step after its grid point, at random. Guesses
 * that start together (a credential-stuffing tool's parallel connections) would otherwise all be
 * answered together, every step, and come back together: a wave of TLS handshakes and backend
 * logins that a legitimate login landing in it waits behind. The spread is drawn afresh for every
 * failure, whoever the user, so it says nothing about the verdict.
 */
export const FAILURE_SPREAD = 0.25;

/**
 * The clock a login's failure deadline is read on, in ms: monotonic, as the connection rates'
 * is. On the wall clock, a step back (NTP at boot, a VM resumed) would add its size to every
 * failure in flight, and so to the places a failure holds until it is answered (the limiter's,
 * an `exec:` backend's logins from the address): an hour's step, an hour's wait.
 */
export const failureClock = (): number => performance.now();

/**
 * When to answer a failed login, shared by every session of the process. auth_failure_delay is
 * one step of a grid measured from when the credentials arrived: a failure is answered at the
 * first grid point after the verdict, and no earlier than the furthest grid point any failure
 * needed in the last quarter hour. A backend that refuses a wrong password (it hashes) slower
 * than an unknown user (it does not) would otherwise show the difference whenever it is slower
 * than the delay; with the high-water mark both are answered at the same point once one slow
 * refusal has been seen, and the grid hides the backend's jitter.
 */
export class FailureDeadline {
  /** Minute index → the most steps a failure needed in that minute. */
  readonly #stepsByMinute = new Map<number, number>();
  #lastWarningAt = -Infinity;
  /** Ends the wait of each failure now waiting for its deadline (endWaits() calls them all). */
  readonly #waiting = new Set<() => void>();
  #ended = false;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = failureClock,
    /** In [0, 1): where in the spread a failure is answered (tests pin it). */
    private readonly random: () => number = Math.random,
  ) {}

  /** Waits until the deadline of a failure whose credentials arrived at `startedAt` (failureClock() ms). */
  wait(startedAt: number, stepMs: number): Promise<void> {
    return this.#until(this.deadline(startedAt, stepMs));
  }

  /** Resolves no earlier than `ms` after `startedAt` (an auth_http Auth-Wait longer than the delay), or at endWaits(). */
  waitAtLeast(startedAt: number, ms: number): Promise<void> {
    return this.#until(startedAt + ms);
  }

  /**
   * Shutdown, once every session is closed: each failure still waiting for its deadline goes on
   * now, and any later one at once. Its reservation is then settled while the store is still
   * open (the guard's close() waits for it), so a restart forgives no failure in flight. Nothing
   * is revealed by the cut: its session is closed, so no answer comes early.
   */
  endWaits(): void {
    this.#ended = true;
    for (const end of [...this.#waiting]) end();
  }

  #until(at: number): Promise<void> {
    const remaining = at - this.now();
    if (remaining <= 0 || this.#ended) return Promise.resolve();
    return new Promise((resolve) => {
      const end = (): void => {
        clearTimeout(timer);
        this.#waiting.delete(end);
        resolve();
      };
      const timer = setTimeout(end, remaining);
      this.#waiting.add(end);
    });
  }

  /**
   * Records a failure that took until now and returns when to answer it: its grid point plus a
   * random part of FAILURE_SPREAD steps; no delay configured: at once.
   */
  deadline(startedAt: number, stepMs: number): number {
    if (stepMs <= 0) return startedAt;
    const now = this.now();
    const elapsed = now - startedAt;
    const steps = Math.max(1, Math.ceil(elapsed / stepMs));
    if (steps > 1) this.#warnSlowBackend(now, elapsed, stepMs);
    const minute = Math.floor(now / BUCKET_MS);
    this.#stepsByMinute.set(minute, Math.max(steps, this.#stepsByMinute.get(minute) ?? 0));
    let highWater = steps;
    for (const [bucket, bucketSteps] of this.#stepsByMinute) {
      if ((minute - bucket) * BUCKET_MS >= HIGH_WATER_WINDOW_MS) this.#stepsByMinute.delete(bucket);
      else highWater = Math.max(highWater, bucketSteps);
    }
    return startedAt + highWater * stepMs + Math.floor(this.random() * stepMs * FAILURE_SPREAD);
  }

  #warnSlowBackend(now: number, elapsedMs: number, stepMs: number): void {
    if (now - this.#lastWarningAt < WARNING_INTERVAL_MS) return;
    this.#lastWarningAt = now;
    this.log.warn(
      { failureMs: elapsedMs, authFailureDelayMs: stepMs },
      'the backend took longer to refuse a login than auth_failure_delay: failures are answered on a grid of ' +
        'that delay for now; set auth_failure_delay above the slowest refusal (at most one warning per 10 minutes)',
    );
  }
}
