/**
 * The shared store with its fallback. While Redis answers, every call goes to it; when a call
 * fails or exceeds the command timeout, the store is marked down (metric, one warn line per
 * outage) and calls go to the in-memory insurance store with the same numbers, or, with
 * `on_store_failure: fail_closed`, reads answer "unavailable". A probe pings Redis every second
 * while it is down and switches back as soon as it answers: no restart needed.
 *
 * The insurance counts from zero at the start of an outage and nothing is copied back to Redis
 * afterwards (rate-limiter-flexible's insurance behaves the same way). A reservation is settled in
 * the store that made it: one made in Redis and settled while Redis is down stays counted there
 * until its window ends (the safe side).
 */
import type { StoreFailureMode } from '../../config/types.js';
import type { Logger } from '../../observability/log.js';
import type { Metrics } from '../../observability/metrics.js';
import type { AttemptKeys } from './keys.js';
import type { LimitStore, RedisLimitStore, Reservation, Settlement } from './store.js';
import type { RedisClient } from './redis-client.js';

/** What reserve answers when the store is down and the policy is fail_closed. */
export const UNAVAILABLE = Symbol('store unavailable');

/** A reservation, and the store that must settle it. */
export interface Held {
  readonly reservation: Reservation;
  readonly settleIn: Settlement;
}

/** How often a down store is probed. */
export const PROBE_INTERVAL_MS = 1_000;

export class StoreTimeoutError extends Error {
  readonly code = 'E_RATELIMIT_STORE_TIMEOUT';
  constructor(ms: number) {
    super(`rate-limit store did not answer within ${ms} ms`);
    this.name = 'StoreTimeoutError';
  }
}

/** Our own deadline over the client's command timeout: a Lua script or a MULTI is several commands. */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StoreTimeoutError(ms)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface InsuredStoreOptions {
  readonly primary: RedisLimitStore;
  readonly client: RedisClient;
  readonly insurance: LimitStore;
  readonly mode: StoreFailureMode;
  readonly deadlineMs: number;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Whether Redis answered at startup. */
  readonly upAtStart: boolean;
}

export class InsuredStore {
  readonly #options: InsuredStoreOptions;
  #up: boolean;
  #outageStartedAt = 0;
  #probe: NodeJS.Timeout | undefined;
  #probing = false;
  #closed = false;

  constructor(options: InsuredStoreOptions) {
    this.#options = options;
    this.#up = options.upAtStart;
    options.metrics.rateLimitStoreUp(this.#up);
    if (!this.#up) this.#enterOutage(new Error('Redis did not answer at startup'));
    // A lost connection is an outage even before a login notices it; 'ready' may end one.
    options.client.on('close', () => {
      if (this.#up && !this.#closed) this.#markDown(new Error('connection to Redis closed'));
    });
    options.client.on('ready', () => {
      if (!this.#up) void this.#probeOnce();
    });
  }

  /** True while Redis is in use. */
  get up(): boolean {
    return this.#up;
  }

  async reserve(keys: AttemptKeys): Promise<Held | typeof UNAVAILABLE> {
    if (this.#up) {
      try {
        const reservation = await withDeadline(this.#options.primary.reserve(keys), this.#options.deadlineMs);
        return { reservation, settleIn: this.#inPrimary };
      } catch (error) {
        this.#primaryFailed(error);
      }
    }
    if (this.#options.mode === 'fail_closed') return UNAVAILABLE;
    return { reservation: await this.#options.insurance.reserve(keys), settleIn: this.#options.insurance };
  }

  /** Settles in Redis, under the deadline; a failure marks the store down and is not retried elsewhere. */
  readonly #inPrimary: Settlement = {
    release: (keys) => this.#onPrimary((store) => store.release(keys), undefined),
    fail: (keys, tag) => this.#onPrimary((store) => store.fail(keys, tag), true),
    succeed: (keys) => this.#onPrimary((store) => store.succeed(keys), undefined),
  };

  async #onPrimary<T>(operation: (store: LimitStore) => Promise<T>, whenDown: T): Promise<T> {
    if (!this.#up) return whenDown;
    try {
      return await withDeadline(operation(this.#options.primary), this.#options.deadlineMs);
    } catch (error) {
      this.#primaryFailed(error);
      return whenDown;
    }
  }

  #primaryFailed(error: unknown): void {
    this.#options.metrics.rateLimitStoreError();
    this.#markDown(error);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#probe);
  }

  #markDown(cause: unknown): void {
    if (!this.#up) return;
    this.#up = false;
    this.#options.metrics.rateLimitStoreUp(false);
    this.#enterOutage(cause);
  }

  #enterOutage(cause: unknown): void {
    this.#outageStartedAt = Date.now();
    const { mode, log } = this.#options;
    const reason = cause instanceof Error ? cause.message : String(cause);
    // Once per outage, not per login.
    log.warn(
      { reason, onStoreFailure: mode },
      mode === 'insurance'
        ? 'rate-limit store (Redis) unavailable: counting failed logins in this process until it is back'
        : 'rate-limit store (Redis) unavailable: refusing logins until it is back (on_store_failure: fail_closed)',
    );
    clearInterval(this.#probe);
    this.#probe = setInterval(() => void this.#probeOnce(), PROBE_INTERVAL_MS);
    this.#probe.unref();
  }

  async #probeOnce(): Promise<void> {
    if (this.#up || this.#probing || this.#closed) return;
    if (this.#options.client.status !== 'ready') return;
    this.#probing = true;
    try {
      await withDeadline(this.#options.primary.ping(), this.#options.deadlineMs);
      if (this.#closed || this.#up) return;
      clearInterval(this.#probe);
      this.#up = true;
      this.#options.metrics.rateLimitStoreUp(true);
      this.#options.log.info({ outageMs: Date.now() - this.#outageStartedAt }, 'rate-limit store (Redis) is back: limits are shared again');
    } catch (error) {
      // Still down; the next tick tries again. The connection looked open and the ping got no
      // answer: it may be dead without a word (a firewall or NAT dropped it, a peer that
      // vanished), and ioredis waits for its TCP timeout, many minutes, before it would notice.
      // A fresh connection is cheap and finds out now.
      // Not after close(): a reconnect would keep a stopping process alive.
      if (!this.#closed) {
        this.#options.log.debug({ err: error }, 'rate-limit store: no answer to a ping on an open connection; reconnecting');
        this.#options.client.disconnect(true);
      }
    } finally {
      this.#probing = false;
    }
  }
}
