/**
 * How each user logs in to a backend that offers APOP (apop-users.ts), shared by every instance
 * through Redis: otherwise a guesser who reaches the instance that has not seen alice log in gets
 * back the cleartext retry that tests one guess against two secrets. One key per backend and
 * user, `PREFIX:apopuser:HMAC`, named by an HMAC of both under the limiter's key (Redis sees no
 * username), holding "apop" or "cleartext", expiring a day after the success that wrote it
 * (REMEMBERED_APOP_USER_MS). Successful logins write, and a retry in clear that was refused too
 * writes "retry-refused" for an hour (CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS), so the keys are
 * bounded by the real users who logged in within a day and the users guessed at within the hour
 * (guesses the limits let through). The process's own ApopUsers is written too and answers alone
 * while Redis is down.
 */
import { CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS, REMEMBERED_APOP_USER_MS } from '../config/limits.js';
import type { UsernameCanonical } from '../config/types.js';
import { canonicalUser } from '../auth/rate-limit/keys.js';
import { SHARED_KEY_KINDS, type SharedRedis } from '../auth/rate-limit/shared-redis.js';
import type { ApopUserKind, ApopUsers } from './apop-users.js';

/** What the backend login asks and tells; ApopUsers alone, or with Redis. */
export interface ApopMemory {
  get(backend: string, user: string): ApopUserKind | undefined | Promise<ApopUserKind | undefined>;
  remember(backend: string, user: string, kind: ApopUserKind): void | Promise<void>;
  /** Whether some user logged in to `backend` in clear after a refused APOP (ApopUsers.cleartextWorks). */
  cleartextWorks(backend: string): boolean;
}

const isKind = (value: string | null): value is ApopUserKind => value === 'apop' || value === 'cleartext' || value === 'retry-refused';

export class SharedApopUsers implements ApopMemory {
  constructor(
    readonly local: ApopUsers,
    private readonly shared: SharedRedis,
    private readonly accounts: UsernameCanonical,
    private readonly ttlMs = REMEMBERED_APOP_USER_MS,
    private readonly refusedRetryMs = CLEARTEXT_ONLY_AFTER_REFUSED_RETRY_MS,
  ) {}

  #key(backend: string, user: string): string {
    return this.shared.key(SHARED_KEY_KINDS.apopUser, this.shared.hashedId(backend, canonicalUser(user, this.accounts)));
  }

  async get(backend: string, user: string): Promise<ApopUserKind | undefined> {
    const key = this.#key(backend, user);
    const value = await this.shared.attempt('APOP users', (client) => client.get(key));
    if (value === undefined) return this.local.get(backend, user);
    return isKind(value) ? value : undefined;
  }

  cleartextWorks(backend: string): boolean {
    return this.local.cleartextWorks(backend);
  }

  async remember(backend: string, user: string, kind: ApopUserKind): Promise<void> {
    this.local.remember(backend, user, kind);
    const key = this.#key(backend, user);
    // A refused retry never replaces what a success taught another instance (NX).
    await this.shared.attempt('APOP users', (client) =>
      kind === 'retry-refused' ? client.set(key, kind, 'PX', this.refusedRetryMs, 'NX') : client.set(key, kind, 'PX', this.ttlMs),
    );
  }
}
